"""Submits ride over a SIGKILL of the Sentinel group's primary: a thread submits continuously
through the client; no submit fails, and every run whose submit returned exists after the
failover and finishes."""

from __future__ import annotations

import threading
import traceback

import redis

from baton import Client
from baton.agents.settings import Settings
from baton.broker import Keys, connect, get_run
from tests.conftest import Workers
from tests.sentinel.conftest import SentinelGroup
from tests.waiting import wait_for


def _done(url: str, keys: Keys, run_ids: list[str]) -> int:
    try:
        with connect(url) as c:
            return sum((get_run(c, keys, r) or {}).get("status") == "done" for r in run_ids)
    except (redis.ConnectionError, redis.TimeoutError, redis.ResponseError):
        return 0


def test_no_submit_fails_over_a_primary_kill(sentinel_group: SentinelGroup, workers: Workers) -> None:
    env = {"REDIS_URL": sentinel_group.url, "BATON_MODEL": "echo"}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env=env)
    with connect(sentinel_group.url) as c:
        workers.wait_ready(c, 3, timeout=120)
    accepted: list[str] = []
    errors: list[BaseException] = []
    stop = threading.Event()

    def submit_forever() -> None:
        with Client(settings=Settings.from_env({}, redis_url=sentinel_group.url)) as api:
            while not stop.is_set():
                try:
                    accepted.append(api.submit(f"topic {len(accepted)}").id)
                except BaseException as exc:  # noqa: BLE001 - any failed submit is the test's failure
                    errors.append(exc)
                    return

    thread = threading.Thread(target=submit_forever, daemon=True)
    thread.start()
    wait_for(lambda: len(accepted) >= 20 or errors, 60, "submits before the kill")
    at_kill = len(accepted)
    sentinel_group.kill_primary()  # SIGKILL; returns once a replica is promoted
    wait_for(lambda: len(accepted) >= at_kill + 20 or errors, 90, "submits after the failover")
    stop.set()
    thread.join(60)
    assert errors == [], "".join(traceback.format_exception(errors[0]))
    run_ids = list(accepted)
    wait_for(lambda: _done(sentinel_group.url, Keys(), run_ids) == len(run_ids), 120, "every accepted run done",
             logs=workers.logs)
