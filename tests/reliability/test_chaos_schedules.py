"""A small schedule chaos run inside ``make test``: a tick every second fired by workers and schedulers
that are SIGKILLed every second or two, and a Redis restart; every tick starts exactly one run and
every run finishes (the longer run is ``python -m bench.chaos_schedules``)."""

from __future__ import annotations

from pathlib import Path

from bench.chaos_schedules import ScheduleChaosConfig, run_schedule_chaos


def test_schedule_chaos_loses_and_duplicates_no_tick(tmp_path: Path, worker_env: dict[str, str]) -> None:
    env = {k: v for k, v in worker_env.items() if k in {"BATON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_STATE_HOME"}}
    report = run_schedule_chaos(ScheduleChaosConfig(seconds=20, kill_every_s=(1.0, 2.0), seed=4, workdir=tmp_path,
                                                    env=env))
    assert report.kills >= 3 and report.redis_restarts == 1
    assert report.ticks >= 15 and report.runs >= report.ticks
    assert report.lost_ticks == 0, report.lost
    assert report.duplicated_ticks == 0
    assert report.unfinished_runs == 0
