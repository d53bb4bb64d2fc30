"""The scale curve: how throughput, latency and Redis memory grow with the number of runs.

``python -m bench.scale --write`` starts its own redis-server (a free port) and, for each model,
size (runs) and workers per role, real worker processes of the seed workflow with short retention
(records, events, markers and results kept ``--retention`` seconds; janitor every 2 s). Each
configuration: the workers are paused (SIGSTOP) while the runs are submitted in pipelined
batches (``broker.bulk.submit_many``), so the backlog peaks at every run; then resumed, and the
driver blocks on ``XREAD`` of the results stream until every run reported. Then ``--singles`` runs
one at a time (the history still present), then the wait until retention has removed the runs.

Reported per configuration: runs/s over the drain, burst latency (resume → result seen, so the
queue wait is included) p50/p99, single-run latency p50/p99, Redis ``used_memory`` at the start,
at peak backlog, after the runs, after retention, bytes per queued and per finished run, worker
RSS, runs lost. ``--write`` puts the table into BENCHMARKS.md (section "Scale curve") and the plot
into docs/scale.png; results of each configuration are kept in ``--out`` (JSON), so models can be
measured in separate invocations and plotted together. Not a test: a measurement.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import psutil
import typer

from baton.broker import EmbeddedRedis, Keys, Redis, Retention, connect, live_workers
from baton.broker.bulk import submit_many
from baton.protocol import Error, Task, decode
from bench.common import ROOT, bench_model, cpu_seconds, percentile, task_text, worker_base_env
from bench.sections import write_section

SECTION = "## Scale curve"
ROLES = ("planner", "researcher", "summarizer")
INTRO = [
    "`python -m bench.scale --write` (`make scale`; the rows below were run as `python -m bench.scale --models "
    "echo` then `python -m bench.scale --models twin --twin-sizes 1000 --write`, merged through docs/scale.json). "
    "Own redis-server "
    "on a free port, seed workflow, real worker processes (1 or 2 per role), retention 5 s (records, events, "
    "markers, results; janitor every 2 s). The workers are paused while all runs are submitted "
    "(`broker.bulk.submit_many`, 500 per MULTI), so the backlog peaks at every run; runs/s is measured over "
    "the drain. *Burst* latency = resume → result seen by the driver (blocking XREAD on the results stream), "
    "so it includes the wait in the queue and grows with the burst by construction; *single* = 20 runs one "
    "at a time right after the burst, the history still in Redis. Redis MiB = `INFO memory` used_memory: "
    "before the burst / all runs queued / all finished / after retention (and how long that took). Bytes per "
    "queued run = (peak - start) / runs; per finished run = (after runs - start) / runs. Worker RSS = the "
    "largest worker. CPU ms/run = CPU time of the workers and redis-server over the drain, per run: the "
    "figure that does not depend on how busy the machine was (\"-\": rows measured before the column existed). "
    "*load* = the 1-minute load average at the end of the row: the machine (2 cores) was "
    "shared with other helpers' test runs, so compare rows of one invocation side by side.",
]
HOLD_TTL_S = 3600
"""TTL of what a submit writes: the workers' commits set the short retention at each hop."""


@dataclass
class Row:
    """One configuration's figures (seconds, bytes, MiB)."""

    model: str
    runs: int
    workers: int
    runs_per_s: float
    burst_p50: float
    burst_p99: float
    single_p50: float
    single_p99: float
    mem_start: int
    mem_peak: int
    mem_after_runs: int
    mem_after_retention: int
    retention_wait_s: float
    bytes_per_queued: float
    bytes_per_finished: float
    worker_rss_mib: float
    cpu_ms_per_run: float
    lost: int
    failed: int
    load: float


class Fleet:
    """``workers`` processes per role of the seed workflow on a flushed Redis."""

    def __init__(self, url: str, env: dict[str, str], workers: int, log: Path) -> None:
        self.client: Redis = connect(url)
        self.keys = Keys(retention=Retention(events_ttl_s=HOLD_TTL_S))
        self.client.flushall()
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.procs = [subprocess.Popen([sys.executable, "-m", "baton", "worker", role], env=env, cwd=ROOT,
                                       stdout=self._log, stderr=self._log)
                      for role in ROLES for _ in range(workers)]
        while len(live_workers(self.client, self.keys)) < len(self.procs):
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a worker exited; see {log}")
            time.sleep(0.1)
        self.cursor = "$"

    def signal(self, sig: signal.Signals) -> None:
        for p in self.procs:
            p.send_signal(sig)

    def used_memory(self) -> int:
        info: Any = self.client.info("memory")
        return int(info["used_memory"])

    def submit(self, count: int) -> list[str]:
        tasks = (Task(run_id=os.urandom(16).hex(), role=ROLES[0], task=task_text(i)) for i in range(count))
        return submit_many(self.client, self.keys, tasks)

    def collect(self, run_ids: set[str], timeout: float) -> tuple[dict[str, float], int]:
        """Block on XREAD of the results stream until every run reported; (when each was seen, failures)."""
        seen: dict[str, float] = {}
        failed = 0
        deadline = time.monotonic() + timeout
        while len(seen) < len(run_ids):
            reply: Any = self.client.xread({self.keys.results(0): self.cursor}, block=1000, count=10000)
            now = time.time()
            for _, items in reply or []:
                for entry_id, fields in items:
                    self.cursor = entry_id
                    msg = decode(fields[b"msg"])
                    if msg.run_id in run_ids and msg.run_id not in seen:
                        seen[msg.run_id] = now
                        failed += isinstance(msg, Error)
            if time.monotonic() > deadline:
                break
        return seen, failed

    def singles(self, count: int) -> list[float]:
        out = []
        for _ in range(count):
            t0 = time.perf_counter()
            ids = self.submit(1)
            self.collect(set(ids), timeout=120)
            out.append(time.perf_counter() - t0)
        return out

    def rss_mib(self) -> float:
        rss = []
        for p in self.procs:
            with contextlib.suppress(psutil.Error):
                rss.append(psutil.Process(p.pid).memory_info().rss / 2**20)
        return max(rss) if rss else float("nan")

    def stop(self) -> None:
        self.signal(signal.SIGCONT)
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
        self._log.close()
        self.client.close()


def measure(model: str, url: str, env: dict[str, str], runs: int, workers: int, *, singles: int,
            retention: int, log: Path, redis_pid: int) -> Row:
    """One configuration, start to retention."""
    fleet = Fleet(url, env, workers, log)
    try:
        fleet.singles(5)  # warm-up: streams, groups and scripts exist, the model answered once
        time.sleep(retention + 3)
        start = fleet.used_memory()
        fleet.signal(signal.SIGSTOP)
        try:
            ids = fleet.submit(runs)
            peak = fleet.used_memory()
        finally:
            fleet.signal(signal.SIGCONT)
        pids = [redis_pid, *(p.pid for p in fleet.procs)]
        cpu0, resumed = cpu_seconds(pids), time.time()
        seen, failed = fleet.collect(set(ids), timeout=3600)
        cpu = cpu_seconds(pids) - cpu0
        drained = max(seen.values()) if seen else time.time()
        after_runs = fleet.used_memory()
        burst = [t - resumed for t in seen.values()]
        single = fleet.singles(singles)
        rss = fleet.rss_mib()
        t0 = time.monotonic()
        after = fleet.used_memory()
        while after > start * 1.1 and time.monotonic() - t0 < retention + 120:
            time.sleep(0.5)
            after = fleet.used_memory()
        waited = time.monotonic() - t0
    finally:
        fleet.stop()
    return Row(model, runs, workers, runs / max(drained - resumed, 1e-9), percentile(burst, 50),
               percentile(burst, 99), percentile(single, 50), percentile(single, 99), start, peak, after_runs,
               after, waited, (peak - start) / runs, (after_runs - start) / runs, rss, cpu / runs * 1e3,
               runs - len(seen), failed, os.getloadavg()[0])


def table(rows: list[Row]) -> list[str]:
    head = ("| model | runs | workers/role | runs/s | burst p50 / p99 (s) | single p50 / p99 (ms) | Redis MiB: "
            "start / peak / after runs / after retention | B per queued run | B per finished run | worker RSS MiB "
            "| CPU ms/run | lost | load |")
    lines = [head, "|" + "---|" * 13]
    mib = 2**20
    for r in rows:
        cpu = "-" if r.cpu_ms_per_run != r.cpu_ms_per_run else f"{r.cpu_ms_per_run:.2f}"
        lines.append(
            f"| {r.model} | {r.runs:,} | {r.workers} | {r.runs_per_s:,.0f} | {r.burst_p50:.2f} / {r.burst_p99:.2f} "
            f"| {r.single_p50 * 1e3:.1f} / {r.single_p99 * 1e3:.1f} | {r.mem_start / mib:.2f} / {r.mem_peak / mib:.1f}"
            f" / {r.mem_after_runs / mib:.1f} / {r.mem_after_retention / mib:.2f} ({r.retention_wait_s:.0f} s) "
            f"| {r.bytes_per_queued:,.0f} | {r.bytes_per_finished:,.0f} | {r.worker_rss_mib:.0f} | {cpu} | {r.lost} | "
            f"{r.load:.1f} |")
    return lines


def plot(rows: list[Row], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4.2))
    for (model, workers) in sorted({(r.model, r.workers) for r in rows}):
        pts = sorted((r for r in rows if r.model == model and r.workers == workers), key=lambda r: r.runs)
        label = f"{model}, {workers}/role"
        (line,) = ax1.plot([r.runs for r in pts], [r.runs_per_s for r in pts], marker="o", label=label)
        mib = 2**20
        ax2.plot([r.runs for r in pts], [r.mem_peak / mib for r in pts], marker="o", color=line.get_color(),
                 label=f"{label}, peak backlog")
        ax2.plot([r.runs for r in pts], [r.mem_after_retention / mib for r in pts], marker="x", linestyle="--",
                 color=line.get_color(), label=f"{label}, after retention")
    for ax, title, ylabel in ((ax1, "Throughput", "runs/s (drain of the backlog)"),
                              (ax2, "Redis used_memory", "MiB")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("runs submitted at once")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("baton scale curve (seed workflow, python -m bench.scale)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def main(
    sizes: Annotated[str, typer.Option(help="Comma-separated run counts (echo).")] = "1000,10000,100000",
    twin_sizes: Annotated[str, typer.Option(help="Comma-separated run counts for the twin.")] = "1000,10000",
    workers: Annotated[str, typer.Option(help="Comma-separated workers per role.")] = "1,2",
    models: Annotated[str, typer.Option(help="Comma-separated: echo, twin.")] = "echo,twin",
    singles: Annotated[int, typer.Option(help="Single runs after each burst.")] = 20,
    retention: Annotated[int, typer.Option(help="Retention (s) of records, events, markers and results.")] = 5,
    out: Annotated[Path, typer.Option(help="JSON results, merged across invocations.")] = ROOT / "docs/scale.json",
    write: Annotated[bool, typer.Option("--write", help="Write BENCHMARKS.md's section and docs/scale.png.")] = False,
) -> None:
    """Measure the scale curve."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    kept = [Row(**{"cpu_ms_per_run": float("nan"), **r}) for r in json.loads(out.read_text())] if out.exists() else []
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        base = worker_base_env(server.url, tmp)
        base.update({"BATON_RECORD_TTL_S": str(retention),
                     "BATON_EVENTS_TTL_S": str(retention), "BATON_MARKER_TTL_S": str(retention),
                     "BATON_RESULTS_RETENTION_S": str(retention), "BATON_JANITOR_INTERVAL_S": "2",
                     "BATON_HEARTBEAT_TTL_S": "600", "BATON_STREAM_TOKENS": "false"})
        for name in filter(None, models.split(",")):
            model = bench_model(name, base)
            label = "echo" if name == "echo" else "twin"
            counts = sizes if name == "echo" else twin_sizes
            for n in (int(v) for v in counts.split(",") if v):
                for w in (int(v) for v in workers.split(",")):
                    row = measure(label, server.url, {**base, "BATON_MODEL": model}, n, w, singles=singles,
                                  retention=retention, log=Path(tmp) / f"{name}-{n}-{w}.log",
                                  redis_pid=server.proc.pid if server.proc else 0)
                    print("\n".join(table([row])[2:]), flush=True)
                    kept = [r for r in kept if (r.model, r.runs, r.workers) != (label, n, w)] + [row]
                    out.parent.mkdir(parents=True, exist_ok=True)
                    out.write_text(json.dumps([asdict(r) for r in kept], indent=1))
    kept.sort(key=lambda r: (r.model, r.runs, r.workers))
    print("\n".join(table(kept)))
    if write:
        plot(kept, ROOT / "docs" / "scale.png")
        write_section(ROOT / "BENCHMARKS.md", SECTION, [SECTION, "", *INTRO, "", *table(kept), "",
                                               "![scale curve](docs/scale.png)", ""])


if __name__ == "__main__":
    typer.run(main)
