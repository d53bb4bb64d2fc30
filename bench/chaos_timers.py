"""Chaos run for durable timers: runs that sleep and wait for a signal while their workers and schedulers
are SIGKILLed and Redis restarts.

``python -m bench.chaos_timers --runs 30 --seconds 60`` starts its own ``redis-server`` (AOF,
``appendfsync always``, as ``bench/chaos_schedules.py``), ``--workers`` code-role workers of
``bench/timer_app.py`` (``--all-roles``; each wakes its role's due waits after every reclaim pass)
and ``--schedulers`` ``baton scheduler`` processes (they wake every role's). It submits ``--runs``
runs spread over the first 80% of ``--seconds``: each does a journaled step, sleeps durably 1-3 s,
waits for the signal ``go`` and does another journaled step; the harness sends each run its signal
0.5-6 s after submitting it (before or after the run reaches the wait). Meanwhile it SIGKILLs one
of the processes every few seconds (a replacement starts half a second later) and kills and
restarts Redis once half-way. Then it waits for every run to end and counts: runs done, failed,
lost (no record, or not ended in time), step bodies run twice (duplicated side effects) or never
(lost ones), waits woken twice, wrong results, waits still parked, kills, Redis restarts. Exit code
1 if anything was lost, failed, duplicated or wrong.
"""

from __future__ import annotations

import json
import logging
import random
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.broker import EmbeddedRedis, Keys, connect, get_run, run_records, submit
from baton.broker.events import read_events
from baton.broker.timers import SignalRefused, list_waits, send_signal
from baton.protocol import Task, Woken
from bench.chaos_schedules import ScheduleChaosConfig, _Procs, _retry, _shake, chaos_env
from bench.common import ROOT
from bench.timer_app import MARKS, STEPS, expected_result

__all__ = ["TimerChaosConfig", "TimerChaosReport", "run_timer_chaos"]

log = logging.getLogger("baton.chaos.timers")

APP = "bench.timer_app:timers"


@dataclass(slots=True)
class TimerChaosConfig(ScheduleChaosConfig):
    """How many runs, how long to shake and how hard (``schedulers``, kills, Redis as for schedules)."""

    runs: int = 30
    workers: int = 2
    sleep_s: tuple[float, float] = (1.0, 3.0)
    signal_after_s: tuple[float, float] = (0.5, 6.0)


@dataclass(slots=True)
class TimerChaosReport:
    """The audit of one run."""

    runs: int = 0
    done: int = 0
    failed: int = 0
    lost_runs: int = 0
    duplicated_steps: int = 0
    lost_steps: int = 0
    duplicated_wakes: int = 0
    wrong_results: int = 0
    still_parked: int = 0
    signals_taken: int = 0
    signals_kept: int = 0
    kills: int = 0
    redis_restarts: int = 0
    seconds: float = 0.0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Every run done with its own signal's result, each step body run once, each wait woken once."""
        return not (self.failed or self.lost_runs or self.duplicated_steps or self.lost_steps
                    or self.duplicated_wakes or self.wrong_results or self.still_parked)


class _AppProcs(_Procs):
    """Code-role workers of the timer app (kind ``app``) and schedulers."""

    def command(self, kind: str) -> list[str]:
        return ["worker", "--app", APP, "--all-roles"] if kind == "app" else super().command(kind)


@dataclass(frozen=True, slots=True)
class _Planned:
    run_id: str
    name: str
    seconds: float
    submit_at: float
    signal_at: float


def _plan(cfg: TimerChaosConfig, rng: random.Random, start: float) -> list[_Planned]:
    step = cfg.seconds * 0.8 / max(cfg.runs, 1)
    plan = []
    for i in range(cfg.runs):
        at = start + i * step
        plan.append(_Planned(f"chaos-timer-{i}", f"r{i}", round(rng.uniform(*cfg.sleep_s), 2), at,
                             at + rng.uniform(*cfg.signal_after_s)))
    return plan


def _feed(client: Any, keys: Keys, plan: list[_Planned], report: TimerChaosReport) -> None:
    """Submit each planned run and send it its signal, at their times, riding out the Redis restart."""
    actions = sorted([(p.submit_at, 0, p) for p in plan] + [(p.signal_at, 1, p) for p in plan],
                     key=lambda a: (a[0], a[1]))
    for at, kind, p in actions:
        time.sleep(max(0.0, at - time.monotonic()))
        if kind == 0:
            try:
                _retry(lambda p=p: _submit_once(client, keys, p), tries=300)
            except Exception as exc:  # noqa: BLE001 - audited as a lost run, with the reason
                report.problems.append(f"submit of {p.run_id} failed: {exc}")
        else:
            _signal(client, keys, p, report)


def _submit_once(client: Any, keys: Keys, p: _Planned) -> None:
    """Submit the run of ``p`` unless an earlier attempt (whose reply was lost) already did."""
    if get_run(client, keys, p.run_id) is None:
        submit(client, keys, Task(run_id=p.run_id, role="sleeper", task=f"{p.name} {p.seconds}", workflow="timers"))


def _signal(client: Any, keys: Keys, p: _Planned, report: TimerChaosReport) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if send_signal(client, keys, p.run_id, "go", p.name):
                report.signals_taken += 1
            else:
                report.signals_kept += 1
            return
        except SignalRefused as exc:  # 409: an attempt whose reply was lost landed, and the run ended
            if exc.status != 409:
                report.problems.append(f"signal to {p.run_id}: {exc.reason}")
            return
        except Exception:  # noqa: BLE001 - Redis may be restarting
            if time.monotonic() > deadline:
                report.problems.append(f"signal to {p.run_id} never sent")
                return
            time.sleep(0.2)


def run_timer_chaos(cfg: TimerChaosConfig) -> TimerChaosReport:
    """Run the scenario of ``cfg`` and return its audit."""
    t0 = time.monotonic()
    rng = random.Random(cfg.seed)
    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="baton-chaos-timers-"))
    server = EmbeddedRedis(work / "redis", appendfsync="always").start()
    keys = Keys()
    env = chaos_env(server.url, {"PYTHONPATH": str(ROOT), **cfg.env})
    procs = _AppProcs(env, work)
    client, feeder_client = connect(server.url, retries=10), connect(server.url, retries=10)
    report = TimerChaosReport(runs=cfg.runs)
    try:
        kinds = ["app"] * cfg.workers + ["scheduler"] * cfg.schedulers
        for kind in kinds:
            procs.spawn(kind)
        deadline = time.monotonic() + 180
        while len(procs.ready(client, keys)) < len(kinds) and time.monotonic() < deadline:
            time.sleep(0.2)  # the faults start once every process is up: start-up is not what they test
        plan = _plan(cfg, random.Random(rng.random()), time.monotonic())
        feeder = threading.Thread(target=_feed, args=(feeder_client, keys, plan, report), daemon=True)
        feeder.start()
        _shake(cfg, rng, server, procs, client, keys, report)
        feeder.join()
        _audit(client, keys, plan, cfg.finish_timeout_s, report)
    finally:
        procs.stop()
        client.close()
        feeder_client.close()
        server.stop()
    report.seconds = round(time.monotonic() - t0, 1)
    log.info("timer chaos run in %s", work)
    return report


def _audit(client: Any, keys: Keys, plan: list[_Planned], timeout_s: float, report: TimerChaosReport) -> None:
    ids = [p.run_id for p in plan]
    deadline = time.monotonic() + timeout_s
    while True:
        records = dict(zip(ids, _retry(lambda: run_records(client, keys, ids)), strict=True))
        if all(r is not None and r.ended for r in records.values()) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    for p in plan:
        rec = records[p.run_id]
        if rec is None or not rec.ended:
            report.lost_runs += 1
            report.problems.append(f"{p.run_id}: {'no record' if rec is None else rec.status}")
            continue
        if rec.status != "done":
            report.failed += 1
            report.problems.append(f"{p.run_id}: {rec.status} {rec.error[:200]}")
            continue
        report.done += 1
        if rec.result != expected_result(p.name):
            report.wrong_results += 1
            report.problems.append(f"{p.run_id}: result {rec.result!r}")
        for step in STEPS:
            runs = int(client.scard(MARKS.format(run=p.run_id, step=step)))
            report.duplicated_steps += int(runs > 1)
            report.lost_steps += int(runs == 0)
            if runs != 1:
                report.problems.append(f"{p.run_id}: step {step!r} ran {runs} times")
        wakes = Counter(e.why for _, e in read_events(client, keys, p.run_id, count=10_000) if isinstance(e, Woken))
        if any(n > 1 for n in wakes.values()):
            report.duplicated_wakes += 1
            report.problems.append(f"{p.run_id}: woken {dict(wakes)}")
    report.still_parked = len([w for w in list_waits(client, keys, limit=10_000) if w.run_id in set(ids)])


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def cli(
    runs: Annotated[int, typer.Option(help="Runs submitted, spread over the first 80% of --seconds.")] = 30,
    seconds: Annotated[float, typer.Option(help="Seconds of faults.")] = 60.0,
    workers: Annotated[int, typer.Option(help="Code-role worker processes (--all-roles).")] = 2,
    schedulers: Annotated[int, typer.Option(help="baton scheduler processes beside the workers.")] = 2,
    seed: Annotated[int | None, typer.Option(help="Random seed for the kill schedule and the runs.")] = None,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
) -> None:
    """Sleep and signal runs of a code role while SIGKILLing their workers and schedulers and restarting
    Redis, then audit."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    report = run_timer_chaos(TimerChaosConfig(runs=runs, seconds=seconds, workers=workers, schedulers=schedulers,
                                              seed=seed))
    print(json.dumps(asdict(report), indent=2))
    if json_out:
        json_out.write_text(json.dumps(asdict(report), indent=2))
    if not report.ok:
        print(f"timer chaos: LOST {report.lost_runs} runs, FAILED {report.failed}, DUPLICATED "
              f"{report.duplicated_steps} steps / {report.duplicated_wakes} wakes, LOST {report.lost_steps} steps, "
              f"WRONG {report.wrong_results}, PARKED {report.still_parked}: {report.problems[:10]}", file=sys.stderr)
        raise typer.Exit(1)


if __name__ == "__main__":
    app()
