"""Parked runs of code roles (``ctx.sleep``, ``ctx.wait_for``) survive a SIGKILLed worker and a
SIGKILLed Redis restarted on its data dir (AOF): after both, the sleep wakes and the signal is taken,
and no step before or after a wait runs twice."""

from __future__ import annotations

import time
from pathlib import Path

import redis

from baton.broker import Keys, get_run, submit
from baton.broker.embedded import EmbeddedRedis
from baton.broker.timers import list_waits, send_signal
from baton.protocol import Task
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

APP = "tests.e2e.waitapps:timers"
FAST = {"BATON_MODEL": "echo", "BATON_RECLAIM_INTERVAL_S": "0.2"}


def _task(run_id: str, role: str, task: str = "t") -> Task:
    return Task(run_id=run_id, role=role, task=task, workflow="timers")


def _status(client: redis.Redis, keys: Keys, run_id: str) -> str:
    return (get_run(client, keys, run_id) or {}).get("status", "")


def test_parked_runs_survive_worker_and_redis_restarts(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    env = {**FAST, "REDIS_URL": private_redis.url, "BATON_TEST_FILE": str(notes), "NAP_S": "4"}
    first = workers.spawn("--app", APP, "--all-roles", env=env)
    nap = submit(private_client, keys, _task("nap", "napper", "n"))
    ask = submit(private_client, keys, _task("ask", "approver", "a"))
    wait_for(lambda: {_status(private_client, keys, r) for r in (nap, ask)} == {"waiting"}, timeout=120,
             what="both runs parked", logs=workers.logs)
    first.kill()  # SIGKILL the worker that parked them
    first.wait()
    time.sleep(1.5)  # AOF fsyncs every second: the parked state is on disk before the crash
    private_redis.kill()  # SIGKILL Redis; then the same port and data dir
    private_redis.start()
    assert {w.run_id for w in list_waits(private_client, keys)} == {nap, ask}
    workers.spawn("--app", APP, "--all-roles", env=env)
    assert send_signal(private_client, keys, ask, "approval", {"by": "cy", "ok": True}) is True
    recs = wait_runs(private_client, keys, [nap, ask], timeout=120)
    assert recs[nap]["result"] == "slept n" and recs[ask]["result"] == "a: cy said True", workers.logs()
    assert sorted(notes.read_text().splitlines()) == ["after n", "asked a", "before n"]
