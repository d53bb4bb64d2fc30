"""``python -m bench.check``: the hot path's speed ratios, side by side, as a CI gate.

A few minutes at most. One embedded ``redis-server`` (its own port and data dir) serves every
configuration; each repeat runs them all, interleaved, so every ratio compares figures taken on
the same machine state:

- echo (``BATON_MODEL=echo``, one worker per role of the seed chain) against the bench's Celery
  chain with the same no-op model: runs/s of one burst and the p50 of sequential single runs;
- the twin, batched (baton's defaults, one worker per role), against the seed notebook: runs/s.

The table prints each ratio per repeat, the target (issue: the hot path) and the floor this check
fails past. A floor is far below the target: about half of the worst ratio measured on this
2-core machine under a load average of 10-20 from other work (echo runs/s 7.5-14x Celery's, p50
0.11-0.31x, the twin 6.1-9.3x the notebook's), and a ratio fails only when *every* repeat is past
its floor: noise on a shared machine does not fail the check, a change that halves the ratio does.
Exit 0 when every ratio passes, 1 otherwise. Benchmarks are not tests:
``make test`` does not run this; ``.ci/run`` does.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.clusters import BatonCluster, CeleryCluster, Measure, measure
from bench.common import ROOT, bench_model, percentile, worker_base_env
from bench.sections import write_section

__all__ = ["RATIOS", "SECTION", "Ratio", "main"]

SECTION = "## Hot path check (bench.check)"

@dataclass(frozen=True, slots=True)
class Ratio:
    """One checked ratio: how it is computed from the repeat's measures, and its target."""

    name: str
    value: Callable[[dict[str, Measure]], float]
    target: float
    floor: float
    """The value past which the check fails (far below the target)."""
    at_most: bool = False

    def passes(self, value: float) -> bool:
        """Whether ``value`` is on the right side of the floor (NaN fails)."""
        return value <= self.floor if self.at_most else value >= self.floor

    def meets(self, value: float) -> bool:
        """Whether ``value`` meets the target itself."""
        return value <= self.target if self.at_most else value >= self.target


def _p50(m: Measure) -> float:
    return percentile(m.latencies, 50)


RATIOS = (
    Ratio("echo: baton single-run p50 / Celery p50", lambda r: _p50(r["baton-echo"]) / _p50(r["celery-echo"]),
          0.25, 0.45, at_most=True),
    Ratio("echo: baton runs/s / Celery runs/s", lambda r: r["baton-echo"].runs_per_s / r["celery-echo"].runs_per_s,
          15.0, 5.0),
    Ratio("twin, batched: baton runs/s / notebook runs/s", lambda r: r["baton"].runs_per_s / r["seed"].runs_per_s,
          10.0, 5.0),
)


def _seed(model: str, runs: int, env: dict[str, str]) -> Measure:
    out = subprocess.run([sys.executable, "-m", "bench.inproc", "seed", "--model", model, "--runs", str(runs),
                          "--threads", "1"], env=env, cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"the notebook run failed:\n{out.stderr[-3000:]}")
    d = json.loads(out.stdout.strip().splitlines()[-1])
    return Measure(runs_per_s=d["runs"] / d["elapsed"], latencies=d["latencies"])


def _cluster(cluster: BatonCluster | CeleryCluster, runs: int, lat_runs: int) -> Measure:
    m = measure(cluster, runs, lat_runs)
    if m.errors:
        raise RuntimeError(f"{m.errors} runs failed")
    if isinstance(cluster, CeleryCluster) and cluster.missed:
        print(f"(Celery: {cluster.missed} result notifications lost by its pub/sub consumer, read from the "
              "result key after a second)", flush=True)
    return m


def _table(rows: list[tuple[Ratio, list[float]]]) -> list[str]:
    lines = ["| ratio | per repeat | target | fails past | met | check |", "|---|---|---|---|---|---|"]
    for ratio, values in rows:
        sign = "<=" if ratio.at_most else ">="
        best = min(values) if ratio.at_most else max(values)
        lines.append(f"| {ratio.name} | {', '.join(f'{v:.2f}' for v in values)} | {sign} {ratio.target:g} "
                     f"| {'>' if ratio.at_most else '<'} {ratio.floor:.2f} | {'yes' if ratio.meets(best) else 'no'} "
                     f"| {'pass' if any(ratio.passes(v) for v in values) else 'FAIL'} |")
    return lines


def main(argv: list[str] | None = None) -> int:
    """Run the repeats, print the ratio table; 1 when a ratio is past its floor in every repeat."""
    p = argparse.ArgumentParser(prog="python -m bench.check", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--echo-runs", type=int, default=512, help="runs per echo throughput burst")
    p.add_argument("--echo-latency-runs", type=int, default=40, help="sequential single echo runs")
    p.add_argument("--runs", type=int, default=96, help="runs per twin burst (baton)")
    p.add_argument("--seed-runs", type=int, default=24, help="notebook runs")
    p.add_argument("--write", action="store_true",
                   help=f"put the table, the command and the load into BENCHMARKS.md (section {SECTION!r})")
    args = p.parse_args(argv)

    from baton.broker import EmbeddedRedis

    work = Path(tempfile.mkdtemp(prefix="baton-check-"))
    server = EmbeddedRedis(work / "redis").start()
    repeats: list[dict[str, Measure]] = []
    try:  # the work directory (the twin, Redis' data, the processes' logs) is kept only when the check fails
        env = worker_base_env(server.url, work)
        model = env["BATON_MODEL"] = bench_model("twin", env)
        env["BENCH_CELERY_URL"] = os.environ["BENCH_CELERY_URL"] = server.url
        echo_env = {**env, "BATON_MODEL": "echo"}
        load_before, started = os.getloadavg(), time.monotonic()
        for rep in range(args.repeats):
            logs = work / f"logs-{rep}"
            logs.mkdir()
            r: dict[str, Any] = {}
            r["baton-echo"] = _cluster(BatonCluster(server.url, echo_env, logs), args.echo_runs,
                                       args.echo_latency_runs)
            r["celery-echo"] = _cluster(CeleryCluster(server.url, echo_env, logs), args.echo_runs // 2,
                                        args.echo_latency_runs)
            r["baton"] = _cluster(BatonCluster(server.url, env, logs), args.runs, 0)
            r["seed"] = _seed(model, args.seed_runs, env)
            repeats.append(r)
            print(f"repeat {rep + 1}/{args.repeats}: " + ", ".join(
                f"{name} {m.runs_per_s:.1f} runs/s" + (f" p50 {_p50(m) * 1000:.1f} ms" if m.latencies else "")
                for name, m in r.items()), flush=True)
    except BaseException:
        print(f"logs and data kept in {work}", file=sys.stderr)
        raise
    finally:
        server.stop()
    rows = [(ratio, [ratio.value(r) for r in repeats]) for ratio in RATIOS]
    load_after = os.getloadavg()
    command = " ".join(["python -m bench.check", *(argv if argv is not None else sys.argv[1:])])
    header = (f"`{command}` ({time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}): {args.repeats} repeats in "
              f"{time.monotonic() - started:.0f} s; 1-min load average before "
              f"{' '.join(f'{x:.2f}' for x in load_before)}, after {' '.join(f'{x:.2f}' for x in load_after)} "
              f"on {os.cpu_count()} cores")
    print(f"\n{header}\n")
    print("\n".join(_table(rows)))
    medians = {ratio.name: statistics.median(values) for ratio, values in rows}
    print("\nmedians: " + "; ".join(f"{k}: {v:.2f}" for k, v in medians.items()))
    if args.write:
        figures = [f"- repeat {i + 1}: " + ", ".join(
            f"{name} {m.runs_per_s:.1f} runs/s" + (f" (p50 {_p50(m) * 1000:.1f} ms)" if m.latencies else "")
            for name, m in r.items()) for i, r in enumerate(repeats)]
        write_section(ROOT / "BENCHMARKS.md", SECTION, [SECTION, "", header + ". Each ratio is taken within one "
                      "repeat (same embedded redis-server, configurations one after the other).", "",
                      *_table(rows), "", *figures])
    failed = [ratio.name for ratio, values in rows if not any(ratio.passes(v) for v in values)]
    if failed:
        print("FAILED (past the floor in every repeat): " + "; ".join(failed) + f" (logs and data kept in {work})")
        return 1
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
