"""Small chaos runs inside ``make test``: SIGKILLed workers and a Redis restart; model outages; Redis OOM.

The full run (200 runs, the twin model) is ``make chaos``; these use the echo model with a
small delay so faults land while tasks are in flight. The outage runs check the audit (nothing
lost or duplicated, every run finished); their target, 0 failed (``report.clean``), needs the
worker to treat outages as time rather than delivery attempts.
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


def _echo_env(worker_env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in worker_env.items() if k in {"BATON_CACHE_DIR", "XDG_CACHE_HOME", "XDG_STATE_HOME"}}


def test_chaos_with_model_outages_fails_loses_and_duplicates_nothing(
    tmp_path: Path, worker_env: dict[str, str]
) -> None:
    report = run_chaos(ChaosConfig(
        runs=12, workers=1, model="echo", seed=5, timeout_s=240, workdir=tmp_path, kill_workers=False,
        redis_restart=False, model_outages=True, model_up_s=(1.0, 2.0), model_down_s=(0.5, 2.0), submit_rate=1,
        env={**_echo_env(worker_env), "BATON_BATCH_SIZE": "2"},
    ))
    assert report.submitted == 12 and report.kills == 0 and report.redis_restarts == 0
    assert report.model_outages >= 1 and report.outage_s >= report.model_down_s > 0
    assert report.ok, report.lost_runs
    assert report.clean and report.completed == 12 and report.longest_run_s > 0  # outages fail nothing


def test_chaos_with_redis_oom_fails_loses_and_duplicates_nothing(tmp_path: Path, worker_env: dict[str, str]) -> None:
    report = run_chaos(ChaosConfig(
        runs=20, workers=1, model="echo", seed=6, timeout_s=240, workdir=tmp_path, kill_workers=False,
        redis_restart=False, redis_oom=True, oom_every_s=(0.3, 1.0), oom_s=(0.5, 2.0), submit_rate=2,
        env={**_echo_env(worker_env), "BATON_ECHO_DELAY_S": "0.05", "BATON_BATCH_SIZE": "2"},
    ))
    assert report.submitted == 20 and report.redis_oom_episodes >= 1 and report.redis_oom_s > 0
    assert report.ok, report.lost_runs
    assert report.clean and report.completed == 20  # a full Redis fails nothing
