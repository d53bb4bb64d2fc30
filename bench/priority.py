"""Priority lanes: an interactive run's latency while a batch backlog waits, next to an idle system.

``python -m bench.priority --write`` starts its own redis-server and one worker per role of the
seed chain, for the echo model and for the twin (the default model). Each round measures
``--runs`` single interactive runs one at a time on the idle system, then queues ``--backlog``
batch runs (the first role's worker is paused with SIGSTOP while they are submitted, so all of
them wait) and measures as many interactive runs while that backlog waits, then cancels the
backlog and lets it drain. Rounds alternate the two conditions on the same workers, so machine
noise hits both.
Latency = submit → result seen by the client. ``--write`` puts the table into BENCHMARKS.md
(section "Priority lanes"). Not a test: a measurement.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.broker import EmbeddedRedis, Keys, Redis, connect, live_workers, submit
from baton.broker.cancel import cancel_run
from baton.protocol import Error, Task, decode
from bench.common import ROOT, bench_model, percentile, spread, task_text, worker_base_env
from bench.sections import write_section

SECTION = "## Priority lanes"
ROLES = ("planner", "researcher", "summarizer")
TARGET = 2.0
"""Wanted: an interactive run's p50 with the backlog waiting at most this many times its idle p50."""


@dataclass
class Figures:
    """One model's samples, in seconds, and what was left of the backlog when the loaded runs ended."""

    model: str
    idle: list[list[float]] = field(default_factory=list)
    loaded: list[list[float]] = field(default_factory=list)
    left: list[int] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    """The backlog's runs finished per second while the loaded runs went through (its price)."""

    def latency(self) -> tuple[float, str]:
        """The pooled p50 ratio (loaded / idle) and the table cells: p50 and p95 of both conditions
        in ms, then the ratio with its per-round spread."""
        idle = [s for r in self.idle for s in r]
        loaded = [s for r in self.loaded for s in r]
        ratio = percentile(loaded, 50) / percentile(idle, 50)
        lo, _, hi = spread([percentile(b, 50) / percentile(a, 50) for a, b in zip(self.idle, self.loaded, strict=True)])
        return ratio, (f"{percentile(idle, 50) * 1000:.1f} | {percentile(loaded, 50) * 1000:.1f} "
                       f"| {percentile(idle, 95) * 1000:.1f} | {percentile(loaded, 95) * 1000:.1f} "
                       f"| **{ratio:.2f}** ({lo:.2f}–{hi:.2f})")


class Cluster:
    """One worker process per role on a fresh Redis, and ``reserved`` more per role started with
    ``--reserve interactive`` (without the shared workers' ``BATON_WORKER_NICE``)."""

    def __init__(self, url: str, env: dict[str, str], log: Path, reserved: int = 0) -> None:
        self.client: Redis = connect(url)
        self.keys = Keys()
        self.client.flushall()
        self._log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        mine = {k: v for k, v in env.items() if k != "BATON_WORKER_NICE"}
        self.procs = [subprocess.Popen([sys.executable, "-m", "baton", "worker", role, *extra], env=e, cwd=ROOT,
                                       stdout=self._log, stderr=self._log)
                      for extra, e, n in (((), env, 1), (("--reserve", "interactive"), mine, reserved))
                      for _ in range(n) for role in ROLES]
        while len(live_workers(self.client, self.keys)) < len(self.procs):
            if any(p.poll() is not None for p in self.procs):
                raise RuntimeError(f"a worker exited; see {log}")
            time.sleep(0.1)
        self.cursor = "$"
        self.done: set[str] = set()

    def submit(self, text: str, priority: str) -> str:
        task = Task(run_id=os.urandom(16).hex(), role=ROLES[0], task=text, priority=priority)  # type: ignore[arg-type]
        return submit(self.client, self.keys, task)

    def wait(self, run_ids: set[str], timeout: float = 900) -> None:
        """Read the results stream until every run in ``run_ids`` reported (an error run fails the bench)."""
        deadline = time.monotonic() + timeout
        while run_ids - self.done:
            reply: Any = self.client.xread({self.keys.results(0): self.cursor}, block=1000, count=5000)
            for _, items in reply or []:
                for entry_id, fields in items:
                    self.cursor = entry_id
                    msg = decode(fields[b"msg"])
                    if isinstance(msg, Error) and msg.run_id in run_ids:
                        raise RuntimeError(f"run {msg.run_id} failed: {msg.reason}")
                    self.done.add(msg.run_id)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(run_ids - self.done)} runs unfinished")

    def single_runs(self, runs: int) -> list[float]:
        """``runs`` interactive runs one at a time; their latencies."""
        out = []
        for i in range(runs):
            t0 = time.perf_counter()
            self.wait({self.submit(task_text(i), "interactive")})
            out.append(time.perf_counter() - t0)
        return out

    def queue_batch(self, count: int) -> list[str]:
        """Submit ``count`` batch runs while the first role's worker is paused, so all of them wait."""
        first = self.procs[0]
        first.send_signal(signal.SIGSTOP)
        try:
            return [self.submit(task_text(i), "batch") for i in range(count)]
        finally:
            first.send_signal(signal.SIGCONT)

    def waiting_batch(self, role: str = ROLES[0]) -> int:
        """Batch tasks of ``role`` not yet read, or read and not yet handed on."""
        groups: Any = self.client.xinfo_groups(self.keys.stream("seed", role, 0, "batch"))
        return int(groups[0]["lag"]) + int(groups[0]["pending"]) if groups else 0

    def drain(self, run_ids: list[str], timeout: float = 900) -> None:
        """Cancel ``run_ids`` and wait until no batch task is left in any role's lane."""
        for run_id in run_ids:
            cancel_run(self.client, self.keys, run_id)
        deadline = time.monotonic() + timeout
        while any(self.waiting_batch(role) for role in ROLES):
            if time.monotonic() > deadline:
                raise TimeoutError("the cancelled backlog did not drain")
            time.sleep(0.2)

    def stop(self) -> None:
        for p in self.procs:
            p.terminate()
        for p in self.procs:
            p.wait(timeout=60)
        self._log.close()
        self.client.close()


def measure(label: str, url: str, env: dict[str, str], log: Path, *, rounds: int, runs: int,
            backlog: int, reserved: int = 0) -> Figures:
    """Alternate idle and backlogged rounds on one cluster."""
    figures = Figures(label)
    cluster = Cluster(url, env, log, reserved)
    try:
        cluster.single_runs(2)  # warm-up: first model calls, connections
        for r in range(rounds):
            figures.idle.append(cluster.single_runs(runs))
            batch = cluster.queue_batch(backlog)
            t0 = time.perf_counter()
            figures.loaded.append(cluster.single_runs(runs))
            figures.rates.append(len(cluster.done.intersection(batch)) / (time.perf_counter() - t0))
            figures.left.append(cluster.waiting_batch())
            print(f"{label} round {r + 1}: idle p50 {percentile(figures.idle[-1], 50) * 1000:.1f} ms, with backlog "
                  f"p50 {percentile(figures.loaded[-1], 50) * 1000:.1f} ms, batch {figures.rates[-1]:.1f} runs/s "
                  f"({figures.left[-1]} batch tasks still unread)", flush=True)
            cluster.drain(batch)
    finally:
        cluster.stop()
    return figures


def reserve_label(reserved: int, nice: int) -> str:
    """A row's label for ``reserved`` interactive workers per role beside shared ones niced by ``nice``."""
    if not reserved:
        return ""
    niced = f", shared workers BATON_WORKER_NICE={nice}" if nice else ""
    return f", + {reserved} reserved worker(s) per role{niced}"


def rows(results: list[Figures]) -> list[str]:
    """The markdown table of the results."""
    out = ["| model, settings | idle p50, ms | p50 with the batch backlog, ms | idle p95, ms | backlog p95, ms "
           "| p50 ratio (per-round min–max) | batch runs/s meanwhile "
           "| batch tasks still queued at the planner after the backlog runs | within 2x |",
           "|---|---|---|---|---|---|---|---|---|"]
    for f in results:
        ratio, cells = f.latency()
        out.append(f"| {f.model} | {cells} | {min(f.rates):.1f}–{max(f.rates):.1f} | {min(f.left)}–{max(f.left)} "
                   f"| {'yes' if ratio <= TARGET else '**no**'} |")
    return out


def main(
    backlog: Annotated[int, typer.Option(help="Batch runs submitted before the interactive runs.")] = 5000,
    runs: Annotated[int, typer.Option(help="Interactive runs per condition and round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Idle/backlog rounds per model.")] = 3,
    models: Annotated[str, typer.Option(help="Comma-separated: echo, twin.")] = "echo,twin",
    lane_sizes: Annotated[str, typer.Option(help="Comma-separated BATON_BATCH_LANE_SIZE values to measure "
                                                 "(0: the batch size, no cap).")] = "0",
    reserved: Annotated[str, typer.Option(help="Comma-separated counts of reserved interactive workers per role "
                                               "(baton worker --reserve interactive) to measure.")] = "0",
    nice: Annotated[int, typer.Option(help="BATON_WORKER_NICE of the shared workers in rows with reserved "
                                           "workers.")] = 0,
    write: Annotated[bool, typer.Option("--write", help="Write the section into BENCHMARKS.md.")] = False,
) -> None:
    """Measure interactive single-run latency with and without a batch backlog."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # stop the workers on the way out
    started, load_before = time.time(), os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-priority-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        base = worker_base_env(server.url, tmp)
        for name in filter(None, models.split(",")):
            model = bench_model(name, base)
            for size, n in ((int(v), int(r)) for v in lane_sizes.split(",") for r in reserved.split(",")):
                label = ("echo" if name == "echo" else "twin of tiny-gpt2 (default model)") + (
                    (f", BATON_BATCH_LANE_SIZE={size}" if size else "") + reserve_label(n, nice) or ", defaults")
                env = {**base, "BATON_MODEL": model, "BATON_BATCH_LANE_SIZE": str(size),
                       **({"BATON_WORKER_NICE": str(nice)} if n and nice else {})}
                results.append(measure(label, server.url, env, Path(tmp) / f"{name}-{size}-{n}.log", rounds=rounds,
                                       runs=runs, backlog=backlog, reserved=n))
    table = rows(results)
    print("\n".join(table))
    if not write:
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    la = os.getloadavg()
    write_section(ROOT / "BENCHMARKS.md", SECTION, [
        SECTION, "",
        f"Rows from `python -m bench.priority --backlog {backlog} --runs {runs} --rounds {rounds} --models {models}"
        f" --lane-sizes {lane_sizes} --reserved {reserved} --nice {nice} --write` "
        f"({when}, {(time.time() - started) / 60:.1f} min, "
        f"1-min load {load_before[0]:.2f} before, "
        f"{la[0]:.2f} after, on {os.cpu_count()} cores shared with other work). One shared worker per role "
        "(rows with reserved workers: as many more per "
        "role started with `--reserve interactive`, the shared ones with the row's `BATON_WORKER_NICE`), baton "
        "defaults (batch size 32, `BATON_BATCH_SHARE=0.1`, no cap on batch-only reads) unless the row says "
        "otherwise. Each round: "
        f"{runs} interactive single runs one at a time on the idle system, then {backlog} batch runs queued "
        f"(the planner paused while they are submitted) and {runs} more interactive single runs while they wait, "
        f"then the backlog is cancelled and drains; {rounds} rounds "
        "alternate the two conditions on the same workers. Latency = submit → result seen by the client; "
        "percentiles pool every round's samples. \"batch runs/s meanwhile\": batch runs finished per second while "
        "the interactive runs went through (what the interactive runs' latency costs the batch lane).",
        "",
        *table,
    ])


if __name__ == "__main__":
    typer.run(main)
