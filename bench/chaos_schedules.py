"""Chaos run for schedules: ticks fired by workers and schedulers while they are SIGKILLed and Redis restarts.

``python -m bench.chaos_schedules --seconds 60`` starts its own ``redis-server`` (AOF, ``appendfsync
always``: the audit is about baton, not about the last second an ``everysec`` AOF may drop), one
worker per role of the seed chain (echo model; their upkeep fires schedules) and two ``baton
scheduler`` processes, adds a schedule that ticks every second (``overlap = allow``),
then for ``--seconds`` SIGKILLs one of those processes every few seconds (a replacement starts
half a second later) and kills and restarts Redis once half-way. Once the replacements are up and
have caught up with the missed ticks (catch-up window :data:`CATCHUP_S`) it pauses the schedule,
waits for every run to finish and counts: ticks due, runs, lost ticks (a tick in the window with
no run), duplicated ticks (a tick with more than one run), unfinished runs (not done), kills,
Redis restarts. Exit code 1 if anything was lost, duplicated or left unfinished.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Protocol

import typer

from baton.agents.schedules import add_schedule, set_paused
from baton.agents.workflow.spec import SEED
from baton.broker import EmbeddedRedis, Keys, connect, list_runs, live_workers, run_records
from baton.broker.schedules import schedule_state
from bench.common import stop_procs

__all__ = ["ScheduleChaosConfig", "ScheduleChaosReport", "Shaken", "chaos_env", "run_schedule_chaos"]

log = logging.getLogger("baton.chaos.schedules")

CATCHUP_S = 300.0
"""The schedule's catch-up window: longer than a replacement takes to start on a loaded machine, so
a tick missed while every firer was down fires once one is back."""


@dataclass(slots=True)
class ScheduleChaosConfig:
    """How long to tick and how hard to shake."""

    seconds: float = 60.0
    schedulers: int = 2
    kill_every_s: tuple[float, float] = (1.5, 3.0)
    restart_after_s: float = 0.5
    redis_restart: bool = True
    finish_timeout_s: float = 120.0
    seed: int | None = None
    workdir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass(slots=True)
class ScheduleChaosReport:
    """The audit of one run."""

    ticks: int = 0
    runs: int = 0
    lost_ticks: int = 0
    duplicated_ticks: int = 0
    unfinished_runs: int = 0
    kills: int = 0
    redis_restarts: int = 0
    lost: list[int] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every tick in the window started exactly one run, and every run finished."""
        return not (self.lost_ticks or self.duplicated_ticks or self.unfinished_runs)


class Shaken(Protocol):
    """What :func:`_shake` counts on a report."""

    kills: int
    redis_restarts: int


def chaos_env(redis_url: str, extra: dict[str, str]) -> dict[str, str]:
    """The environment of the chaos runs' processes: fast heartbeats, reclaims and upkeep, echo model."""
    return {**{k: v for k, v in os.environ.items() if not k.startswith("BATON_")}, "REDIS_URL": redis_url,
            "BATON_MODEL": "echo", "BATON_UPKEEP_POLL_S": "0.2", "BATON_BLOCK_MS": "300",
            "BATON_HEARTBEAT_INTERVAL_S": "0.5", "BATON_HEARTBEAT_TTL_S": "2", "BATON_RECLAIM_INTERVAL_S": "0.5",
            "BATON_LEASE_MS": "5000", "BATON_RETRY_BACKOFF_S": "0.1", "BATON_MAX_DELIVERIES": "8",
            "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1", **extra}


class _Procs:
    """The firing processes: role workers and schedulers, by kind."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env, self.log_dir, self.spawned = env, log_dir, 0
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.logs: dict[int, Path] = {}

    def command(self, kind: str) -> list[str]:
        """The ``baton`` arguments that start a process of ``kind`` (a role's worker, or a scheduler)."""
        return ["scheduler", "--poll", "0.2"] if kind == "scheduler" else ["worker", kind]

    def spawn(self, kind: str) -> None:
        self.spawned += 1
        path = self.log_dir / f"{kind}-{self.spawned}.log"
        with open(path, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "baton", *self.command(kind)], env=self.env, stdout=out,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((kind, proc))
        self.logs[proc.pid] = path

    def live(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(k, p) for k, p in self.procs if p.poll() is None]

    def ready(self, client: Any, keys: Keys) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """Live processes past start-up: workers with a heartbeat, schedulers that said they poll."""
        try:
            beating = {w.pid for w in live_workers(client, keys)}
        except Exception:  # noqa: BLE001 - Redis may be restarting
            beating = set()
        return [(k, p) for k, p in self.live()
                if (b"scheduler polling" in self.logs[p.pid].read_bytes() if k == "scheduler" else p.pid in beating)]

    def stop(self) -> None:
        stop_procs([p for _, p in self.procs])


def run_schedule_chaos(cfg: ScheduleChaosConfig) -> ScheduleChaosReport:
    """Run the scenario of ``cfg`` and return its audit."""
    rng = random.Random(cfg.seed)
    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="baton-chaos-schedules-"))
    server = EmbeddedRedis(work / "redis", appendfsync="always").start()
    keys = Keys()
    procs = _Procs(chaos_env(server.url, cfg.env), work)
    client = connect(server.url, retries=10)
    report = ScheduleChaosReport()
    try:
        kinds = [r.role for r in SEED.roles] + ["scheduler"] * cfg.schedulers
        for kind in kinds:
            procs.spawn(kind)
        deadline = time.monotonic() + 180
        while len(procs.ready(client, keys)) < len(kinds) and time.monotonic() < deadline:
            time.sleep(0.2)  # the faults start once every process is up: start-up is not what they test
        schedule = add_schedule(client, keys, "chaos", "* * * * * *", task="tick", overlap="allow",
                                catchup_s=CATCHUP_S)
        paused_at = _shake(cfg, rng, server, procs, client, keys, report)
        deadline = time.monotonic() + 180  # the replacements start, and catch up on the ticks missed meanwhile
        while time.monotonic() < deadline and (len(procs.ready(client, keys)) < len(kinds)
                                               or _retry(lambda: schedule_state(client, keys, "chaos")).last_tick
                                               < paused_at):
            time.sleep(0.2)
        _retry(lambda: set_paused(client, keys, "chaos", True))
        first, last = math.floor(schedule.created_at) + 1, math.floor(paused_at) - 2
        report.ticks = last - first + 1
        _audit(client, keys, first, last, cfg.finish_timeout_s, report)
    finally:
        procs.stop()
        client.close()
        server.stop()
    log.info("schedule chaos run in %s", work)
    return report


def _retry(call: Any, tries: int = 50) -> Any:
    for n in range(tries):
        try:
            return call()
        except Exception:  # noqa: BLE001 - Redis may be restarting
            if n == tries - 1:
                raise
            time.sleep(0.2)
    return None


def _shake(cfg: ScheduleChaosConfig, rng: random.Random, server: EmbeddedRedis, procs: _Procs, client: Any,
           keys: Keys, report: Shaken) -> float:
    """Kill and replace firing processes (and Redis once) for ``cfg.seconds``; return when it ended."""
    start = time.monotonic()
    end = start + cfg.seconds
    next_kill = start + rng.uniform(*cfg.kill_every_s)
    respawn: list[tuple[float, str]] = []
    restarted = not cfg.redis_restart
    while (now := time.monotonic()) < end:
        if not restarted and now >= start + cfg.seconds / 2:
            server.restart()
            report.redis_restarts += 1
            restarted = True
        if now >= next_kill and (ready := procs.ready(client, keys)):  # killing loaders proves nothing
            kind, proc = rng.choice(ready)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            report.kills += 1
            respawn.append((now + cfg.restart_after_s, kind))
            next_kill = now + rng.uniform(*cfg.kill_every_s)
        for at, kind in list(respawn):
            if now >= at:
                procs.spawn(kind)
                respawn.remove((at, kind))
        time.sleep(0.05)
    for _, kind in respawn:
        procs.spawn(kind)
    return time.time()  # (the ticks up to here must all fire)


def _audit(client: Any, keys: Keys, first: int, last: int, timeout_s: float, report: ScheduleChaosReport) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        records = [r for r in _retry(lambda: run_records(client, keys, list_runs(client, keys, 100_000)))
                   if r is not None and r.metadata.get("schedule") == "chaos"]
        if all(r.ended for r in records) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    fired = Counter(int(r.metadata["tick"]) for r in records)
    report.runs = len(records)
    report.duplicated_ticks = sum(1 for n in fired.values() if n > 1)
    report.lost = [t for t in range(first, last + 1) if t not in fired]
    report.lost_ticks = len(report.lost)
    report.unfinished_runs = sum(1 for r in records if r.status != "done")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def cli(
    seconds: Annotated[float, typer.Option(help="Seconds of ticks under faults.")] = 60.0,
    schedulers: Annotated[int, typer.Option(help="baton scheduler processes beside the workers.")] = 2,
    seed: Annotated[int | None, typer.Option(help="Random seed for the kill schedule.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Tick a schedule every second while SIGKILLing its firers and restarting Redis, then audit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_schedule_chaos(ScheduleChaosConfig(seconds=seconds, schedulers=schedulers, seed=seed))
    print(json.dumps(asdict(report), indent=2))
    if json_out:
        json_out.write_text(json.dumps(asdict(report), indent=2))
    if not report.ok:
        print(f"schedule chaos: LOST {report.lost_ticks} ticks {report.lost[:10]}, DUPLICATED "
              f"{report.duplicated_ticks}, UNFINISHED {report.unfinished_runs}", file=sys.stderr)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
