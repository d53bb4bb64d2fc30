"""Fair dispatch: one tenant's single-run latency while another tenant's backlog waits, next to idle.

``python -m bench.fairness --write`` starts its own redis-server and one worker per role of the
seed chain, for the echo model and for the twin (the default model). Each round measures
``--runs`` single runs of tenant ``globex`` one at a time on the idle system, then queues
``--backlog`` runs of tenant ``acme`` (the first role's worker is paused with SIGSTOP while they are
submitted, so all of them wait), waits until the workers hand on its first tasks (the flood is
served, not only queued) and measures as many ``globex`` runs while that backlog waits, then
cancels the backlog and lets it drain. Rounds alternate the two conditions on the same workers.
Latency = submit -> result seen by the client. ``acme``'s throughput while ``globex``'s runs went
through (its runs finished per second over that phase) is the price of the fair share, so it is
printed beside the ratio. ``--settings`` measures more worker settings side by side (``NAME=VALUE``
environment lines, ``;`` between settings; empty: baton's defaults). ``--write`` puts the table into
BENCHMARKS.md (section "Fair dispatch across tenants"). Not a test: a measurement.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.broker import EmbeddedRedis
from baton.broker.bulk import submit_many
from baton.broker.cancel import cancel_run
from baton.protocol import Task
from bench.common import ROOT, bench_model, percentile, task_text, worker_base_env
from bench.priority import ROLES, TARGET, Cluster, Figures, reserve_label
from bench.sections import write_section

SECTION = "## Fair dispatch across tenants"


class Tenants(Cluster):
    """One worker per role; runs of tenant ``acme`` (the flood) and ``globex`` (the single runs)."""

    rates: list[float]

    def submit(self, text: str, priority: str, tenant: str = "globex") -> str:  # type: ignore[override]
        task = Task(run_id=os.urandom(16).hex(), role=ROLES[0], task=text, priority=priority,  # type: ignore[arg-type]
                    tenant=tenant)
        submit_many(self.client, self.keys, [task])
        return task.run_id

    def queue_batch(self, count: int) -> list[str]:
        """``count`` runs of ``acme`` submitted while the first role's worker is paused."""
        tasks = [Task(run_id=os.urandom(16).hex(), role=ROLES[0], task=task_text(i), tenant="acme")
                 for i in range(count)]
        first = self.procs[0]
        first.send_signal(signal.SIGSTOP)
        try:
            return submit_many(self.client, self.keys, tasks)
        finally:
            first.send_signal(signal.SIGCONT)

    def waiting_batch(self, role: str = ROLES[0]) -> int:
        """Tasks of ``acme`` for ``role`` not yet read, or read and not yet handed on."""
        total = 0
        for stream in self.keys.lane_streams("seed", role, 0, "acme"):
            groups: Any = self.client.xinfo_groups(stream) if self.client.exists(stream) else []
            total += sum(int(g["lag"] or 0) + int(g["pending"]) for g in groups)
        return total

    def flowing(self, backlog: int, timeout: float = 10) -> None:
        """Wait until the workers hand on acme's first tasks: the flood is being served, not only queued.

        A worker finds a tenant's new streams on its once-a-second look-up; runs measured before
        that would see a queue nobody reads yet, not a flood."""
        deadline = time.monotonic() + timeout
        while self.waiting_batch() >= backlog and time.monotonic() < deadline:
            time.sleep(0.01)

    def drain(self, run_ids: list[str], timeout: float = 900) -> None:
        for run_id in run_ids:
            cancel_run(self.client, self.keys, run_id)
        deadline = time.monotonic() + timeout
        while any(self.waiting_batch(role) for role in ROLES):
            if time.monotonic() > deadline:
                raise TimeoutError("the cancelled backlog did not drain")
            time.sleep(0.2)


def measure(label: str, url: str, env: dict[str, str], log: Path, *, rounds: int, runs: int,
            backlog: int, reserved: int = 0) -> tuple[Figures, list[float]]:
    """Alternate idle and flooded rounds on one cluster; also ``acme``'s runs/s while flooded."""
    figures, rates = Figures(label), []
    cluster = Tenants(url, env, log, reserved)
    try:
        cluster.single_runs(2)  # warm-up: first model calls, connections
        for r in range(rounds):
            figures.idle.append(cluster.single_runs(runs))
            flood = cluster.queue_batch(backlog)
            cluster.flowing(backlog)
            t0 = time.perf_counter()
            figures.loaded.append(cluster.single_runs(runs))
            rates.append(len(cluster.done.intersection(flood)) / (time.perf_counter() - t0))
            figures.left.append(cluster.waiting_batch())
            print(f"{label} round {r + 1}: idle p50 {percentile(figures.idle[-1], 50) * 1000:.1f} ms, flooded "
                  f"p50 {percentile(figures.loaded[-1], 50) * 1000:.1f} ms, acme {rates[-1]:.1f} runs/s "
                  f"({figures.left[-1]} of acme's tasks still unread)", flush=True)
            cluster.drain(flood)
    finally:
        cluster.stop()
    return figures, rates


def rows(results: list[tuple[Figures, list[float]]]) -> list[str]:
    out = ["| model, settings | globex idle p50, ms | globex p50 with acme's backlog, ms | idle p95, ms | "
           "backlog p95, ms | p50 ratio (per-round min–max) | acme runs/s meanwhile | acme tasks still unread "
           "at the first role | within 2x |",
           "|---|---|---|---|---|---|---|---|---|"]
    for f, rates in results:
        ratio, cells = f.latency()
        out.append(f"| {f.model} | {cells} | {min(rates):.1f}–{max(rates):.1f} "
                   f"| {min(f.left)}–{max(f.left)} | {'yes' if ratio <= TARGET else '**no**'} |")
    return out


def main(
    backlog: Annotated[int, typer.Option(help="Runs of acme queued before globex's runs.")] = 5000,
    runs: Annotated[int, typer.Option(help="globex's single runs per condition and round.")] = 10,
    rounds: Annotated[int, typer.Option(help="Idle/flooded rounds per model and setting.")] = 2,
    models: Annotated[str, typer.Option(help="Comma-separated: echo, twin.")] = "echo,twin",
    settings: Annotated[str, typer.Option(help="Worker settings to compare: NAME=VALUE[,NAME=VALUE] per "
                                               "setting, ';' between settings; empty: the defaults.")] = "",
    reserved: Annotated[str, typer.Option(help="Comma-separated counts of reserved interactive workers per role "
                                               "(baton worker --reserve interactive) to measure.")] = "0",
    nice: Annotated[int, typer.Option(help="BATON_WORKER_NICE of the shared workers in rows with reserved "
                                           "workers.")] = 0,
    write: Annotated[bool, typer.Option("--write", help="Write the section into BENCHMARKS.md.")] = False,
) -> None:
    """Measure one tenant's single-run latency with and without another tenant's backlog."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started, load_before = time.time(), os.getloadavg()
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-fairness-") as tmp, EmbeddedRedis(Path(tmp) / "redis") as server:
        base = worker_base_env(server.url, tmp)
        for name in filter(None, models.split(",")):
            model = bench_model(name, base)
            for i, (setting, n) in enumerate((a, int(b)) for a in settings.split(";") for b in reserved.split(",")):
                extra = dict(kv.split("=", 1) for kv in filter(None, setting.split(",")))
                label = ("echo" if name == "echo" else "twin of tiny-gpt2 (default model)") + (
                    "".join(f", {k}={v}" for k, v in extra.items()) + reserve_label(n, nice) or ", defaults")
                niced = {"BATON_WORKER_NICE": str(nice)} if n and nice else {}
                env = {**base, "BATON_MODEL": model, **extra, **niced}
                results.append(measure(label, server.url, env, Path(tmp) / f"{name}-{i}.log", rounds=rounds,
                                       runs=runs, backlog=backlog, reserved=n))
    table = rows(results)
    print("\n".join(table))
    if not write:
        return
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(started))
    la = os.getloadavg()
    write_section(ROOT / "BENCHMARKS.md", SECTION, [
        SECTION, "",
        f"Rows from `python -m bench.fairness --backlog {backlog} --runs {runs} --rounds {rounds} --models {models}"
        + (f" --settings '{settings}'" if settings else "") + f" --reserved {reserved} --nice {nice}"
        + f" --write` ({when}, {(time.time() - started) / 60:.1f} min, 1-min load {load_before[0]:.2f} before, "
        f"{la[0]:.2f} after, on {os.cpu_count()} cores shared with other work). One shared worker per role "
        "(rows with reserved workers: as many more per "
        "role started with `--reserve interactive`, the shared ones with the row's `BATON_WORKER_NICE`), baton "
        "defaults (batch size 32) unless the row says otherwise. Each round: "
        f"{runs} single runs of tenant globex one at a time on the idle system, then {backlog} runs of tenant "
        f"acme queued (the planner paused while they are submitted) and {runs} more globex runs while they wait, "
        f"then acme's backlog is cancelled and drains; {rounds} rounds alternate the two conditions on the same "
        "workers. Latency = submit → result seen by the client; percentiles pool every round's samples. "
        "\"acme runs/s meanwhile\": acme's runs finished per second while globex's runs went through (the "
        "flooding tenant's throughput under the fair share).",
        "",
        *table,
    ])


if __name__ == "__main__":
    typer.run(main)
