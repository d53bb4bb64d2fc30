"""A small chaos run inside ``make test``: 30 runs, SIGKILLed workers, one Redis restart.

The full run (200 runs, the twin model) is ``make chaos``; this one uses the echo model with a
small delay so kills land while tasks are in flight.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.chaos import ChaosConfig, run_chaos


def test_small_chaos_run_loses_and_duplicates_nothing(tmp_path: Path, worker_env: dict[str, str]) -> None:
    env = {k: v for k, v in worker_env.items() if k in {"BATON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_STATE_HOME"}}
    report = run_chaos(ChaosConfig(
        runs=30, workers=2, model="echo", kill_every_s=(0.6, 1.2), seed=3, timeout_s=150, workdir=tmp_path,
        env={**env, "BATON_ECHO_DELAY_S": "0.15", "BATON_BATCH_SIZE": "2"},
    ))
    assert report.submitted == 30 and report.redis_restarts == 1
    assert report.kills >= 1 and report.restarts == report.kills
    assert report.lost == 0, report.lost_runs
    assert report.duplicated_results == 0 and report.duplicated_pad_entries == 0
    assert report.missing_pad_entries == 0
    assert report.completed + report.failed == 30


@pytest.mark.chaos
def test_full_chaos_run_with_the_twin(tmp_path: Path, twin: Path) -> None:
    report = run_chaos(ChaosConfig(runs=200, workers=2, model=str(twin), workdir=tmp_path))
    assert report.ok and report.kills >= 1, report
