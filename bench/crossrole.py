"""Cross-role batching in steady state: ``python -m bench.crossrole --write``.

Three configurations of the seed chain with the twin of tiny-gpt2, interleaved in each repeat
(same order every repeat) on one embedded ``redis-server`` (never the machine's 6379):

- ``all-roles``: 2 processes of ``baton worker --all-roles`` (cross-role batched model calls);
- ``one-role``: 3 processes, ``baton worker ROLE`` for each role (the usual deployment);
- ``ceiling``: ``python -m bench``'s in-process ceiling (no broker, batches of the batch size,
  the better of one process per core and 3 processes), sized to run at least ``--seconds``.

The two baton configurations run a closed loop keeping ``--in-flight`` runs outstanding (a new
run is submitted as each result arrives; by default 8 batches' worth, so that two processes find a
full batch of each of the three roles with more queued behind, as the ceiling's batches are always
full: BENCHMARKS.md, "Cross-role batching") and count the results of ``--seconds`` seconds after
``--warmup`` seconds of the same load: steady state, not a burst. Then ``--latency-runs``
sequential single runs (one outstanding at a time) measure what each mode adds to a lone run:
through ONE all-roles process (its cluster is started for that alone) and through the one-role
workers. CPU per run over the same window (``/proc``): the baton workers', and ``redis-server``'s
with the driver's; the ceiling's is its processes' CPU over their batches (the model alone). The
ceiling's CPU per run over a configuration's is the ratio it could reach if the cores did nothing
else: the share the broker and the runtime cost, whatever the machine's load. ``--write`` puts the
table into BENCHMARKS.md (section "Cross-role batching"). Not a test: a measurement.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from bench.__main__ import _ceiling
from bench.clusters import BatonCluster, Measure
from bench.common import ROOT, bench_model, percentile, spread, worker_base_env
from bench.sections import write_section

__all__ = ["main"]

log = logging.getLogger("bench")

SECTION = "## Cross-role batching"
CONFIGS = {
    "all-roles": "baton, 2 processes of `baton worker --all-roles` (cross-role batching)",
    "one-role": "baton, 3 one-role workers (`baton worker ROLE`, one per role)",
    "ceiling": "ceiling: in-process batched generation, no broker (best of 1 process/core and 3 processes)",
}


def _baton(cfg: str, url: str, env: dict[str, str], log_dir: Path, args: argparse.Namespace,
           server_pid: int) -> Measure:
    m = Measure()
    cluster = BatonCluster(url, env, log_dir, all_roles=2 if cfg == "all-roles" else 0)
    try:
        cluster.start(m)
        cluster.sustained(m, in_flight=args.in_flight, seconds=args.seconds, warmup_s=args.warmup,
                          server_pid=server_pid)
        if cfg == "one-role":
            cluster.latency(m, args.latency_runs)
    finally:
        cluster.stop(m)
    if cfg == "all-roles" and args.latency_runs:
        lone = BatonCluster(url, env, log_dir, all_roles=1)
        try:
            lone.start(Measure())
            lone.latency(m, args.latency_runs)
        finally:
            lone.stop(Measure())
    return m


def _ceiling_steady(model: str, env: dict[str, str], batch: int, seconds: float, guess: float) -> Measure:
    """The ceiling with enough runs to last ``seconds`` at the rate ``guess`` (runs/s)."""
    runs = max(256, int(guess * seconds))
    procs = os.cpu_count() or 1
    return max((_ceiling(model, runs, batch, env, n) for n in sorted({procs, 3})), key=lambda m: m.runs_per_s)


def main(argv: list[str] | None = None) -> int:
    """Run the repeats, print the table, write it when asked."""
    p = argparse.ArgumentParser(prog="python -m bench.crossrole", description=__doc__)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--seconds", type=float, default=20.0, help="measured steady-state window per configuration")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds of load before the window")
    p.add_argument("--in-flight", type=int, default=0,
                   help="runs kept outstanding by the closed loop (default: 8 batches' worth, enough to keep "
                        "two processes' batches of every role full)")
    p.add_argument("--latency-runs", type=int, default=16, help="sequential single runs per baton configuration")
    p.add_argument("--write", action="store_true", help="write the section into BENCHMARKS.md")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s bench: %(message)s", datefmt="%H:%M:%S")
    from baton.agents.settings import Settings
    from baton.broker import EmbeddedRedis

    started, load_before = time.time(), os.getloadavg()
    loads: list[float] = []
    results: dict[str, list[Measure]] = {c: [] for c in CONFIGS}
    batch = Settings().batch_size
    args.in_flight = args.in_flight or 8 * batch
    with tempfile.TemporaryDirectory(prefix="bench-crossrole-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        env = worker_base_env(server.url, tmp)
        model = env["BATON_MODEL"] = bench_model("twin", env)
        guess = _ceiling(model, 64, batch, env, os.cpu_count() or 1).runs_per_s  # sizes the first ceiling
        for rep in range(args.repeats):
            for cfg in CONFIGS:
                log.info("repeat %d/%d: %s", rep + 1, args.repeats, cfg)
                loads.append(os.getloadavg()[0])
                log_dir = Path(tmp) / f"logs-{rep}-{cfg}"
                log_dir.mkdir()
                if cfg == "ceiling":
                    m = _ceiling_steady(model, env, batch, args.seconds, guess)
                    guess = m.runs_per_s
                else:
                    assert server.proc is not None
                    m = _baton(cfg, server.url, env, log_dir, args, server.proc.pid)
                log.info("%s: %.1f runs/s", cfg, m.runs_per_s)
                results[cfg].append(m)
    table = _table(results)
    print("\n".join(table))
    if args.write:
        la = os.getloadavg()
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
        cmd = "python -m bench.crossrole " + " ".join(argv if argv is not None else sys.argv[1:])
        write_section(ROOT / "BENCHMARKS.md", SECTION, [
            SECTION, "",
            f"Rows from `{cmd.strip()}` ({when}, {(time.time() - started) / 60:.1f} min; 1-min load "
            f"{load_before[0]:.2f} before, {la[0]:.2f} after, {min(loads):.2f}–{max(loads):.2f} between "
            f"configurations, on {os.cpu_count()} cores shared with other helpers' work). Twin of tiny-gpt2, "
            f"seed chain, baton defaults (batch size {batch}). Baton rows: a closed loop keeping "
            f"{args.in_flight} runs in flight, results counted over {args.seconds:.0f} s after {args.warmup:.0f} s "
            f"of the same load; the ceiling runs long enough to last about as long. Single-run p50: "
            f"{args.latency_runs} sequential runs through ONE all-roles process, and through the one-role "
            f"workers. The configurations "
            f"alternate within each of {args.repeats} repeats. Cells: **median** (min–max); the ratio is taken "
            "per repeat (same machine state), then the median.",
            "",
            *table,
        ])
    return 0


def _cpu(ms: list[Measure]) -> str:
    """The CPU per run of a configuration, ms (medians): the workers' (the ceiling's model), then Redis' and
    the driver's."""
    work = spread([m.cpu_s_per_run * 1000 for m in ms])[1]
    broker = spread([m.broker_cpu_s_per_run * 1000 for m in ms])[1]
    return f"{work:.2f}" + (f" + {broker:.2f}" if broker == broker else "")


def _table(results: dict[str, list[Measure]]) -> list[str]:
    rows = ["| configuration | runs/s | ÷ ceiling (same repeat) | CPU per run, ms: workers (ceiling: model) + Redis "
            "and driver | ceiling's CPU per run ÷ this one's | single-run p50, ms | p50 ÷ one-role p50 |",
            "|---|---|---|---|---|---|---|"]
    ceil = [m.runs_per_s for m in results["ceiling"]]
    ceil_cpu = [m.cpu_s_per_run for m in results["ceiling"]]
    base = [percentile(m.latencies, 50) for m in results["one-role"]]
    for cfg, label in CONFIGS.items():
        rates = [m.runs_per_s for m in results[cfg]]
        lo, mid, hi = spread(rates)
        ratio = p50 = vs = bound = "–"
        if cfg != "ceiling":
            blo, bmid, bhi = spread([c / (m.cpu_s_per_run + m.broker_cpu_s_per_run)
                                     for m, c in zip(results[cfg], ceil_cpu, strict=True)])
            bound = f"{bmid:.2f} ({blo:.2f}–{bhi:.2f})"
            rlo, rmid, rhi = spread([r / c for r, c in zip(rates, ceil, strict=True)])
            ratio = f"**{rmid:.2f}** ({rlo:.2f}–{rhi:.2f})"
            lat = [percentile(m.latencies, 50) for m in results[cfg]]
            if all(x == x for x in lat):
                plo, pmid, phi = spread([x * 1000 for x in lat])
                p50 = f"**{pmid:.0f}** ({plo:.0f}–{phi:.0f})"
                vlo, vmid, vhi = spread([x / b for x, b in zip(lat, base, strict=True)])
                vs = f"**{vmid:.2f}** ({vlo:.2f}–{vhi:.2f})"
        cpu = _cpu(results[cfg])
        rows.append(f"| {label} | **{mid:.1f}** ({lo:.1f}–{hi:.1f}) | {ratio} | {cpu} | {bound} | {p50} | {vs} |")
    return rows


if __name__ == "__main__":
    raise SystemExit(main())
