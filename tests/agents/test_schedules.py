"""Cron schedules against a real Redis: one run per tick from three scheduler processes and workers
(whose upkeep fires schedules too), the overlap policies, catch-up after downtime (in-process
passes at chosen instants, and real processes stopped and restarted), and the CLI and HTTP faces."""

from __future__ import annotations

import itertools
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import redis
from fastapi.testclient import TestClient

from baton import Client
from baton.agents.ops.dashboard import create_app
from baton.agents.schedules import add_schedule, fire_due, parse_duration
from baton.agents.settings import Settings
from baton.agents.workflow import SEED
from baton.broker import Keys, get_run, list_runs
from baton.broker.cancel import cancel_run
from baton.broker.runs import run_metadata
from baton.broker.schedules import get_schedule, schedule_state
from baton.protocol import ProtocolError
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for

EVERY_SECOND = "* * * * * *"


def _ticks(client: redis.Redis, keys: Keys, name: str = "s") -> list[tuple[int, float]]:
    """(tick, created_at) of every run the schedule started, by tick."""
    out = []
    for run_id in list_runs(client, keys, 10_000):
        rec = get_run(client, keys, run_id) or {}
        meta = run_metadata(rec)
        if meta.get("schedule") == name:
            out.append((int(meta["tick"]), float(rec["created_at"])))
    return sorted(out)


def _env(redis_url: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {"REDIS_URL": redis_url}


def _schedulers(redis_url: str, n: int) -> list[subprocess.Popen[bytes]]:
    procs = [subprocess.Popen([sys.executable, "-m", "baton", "scheduler", "--poll", "0.1"], cwd=ROOT,
                              env=_env(redis_url), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
             for _ in range(n)]
    for p in procs:  # each is connected, with its signal handlers, before the test counts runs
        assert p.stderr is not None and b"scheduler polling" in p.stderr.readline()
    return procs


def _stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        assert p.wait(timeout=30) == 0


def _runs(client: redis.Redis, keys: Keys, name: str) -> list[str]:
    return [r for r in list_runs(client, keys, 10_000)
            if run_metadata(get_run(client, keys, r) or {}).get("schedule") == name]


def test_three_schedulers_and_workers_one_run_per_tick_then_catch_up(
        redis_url: str, client: redis.Redis, keys: Keys, workers: Workers) -> None:
    """Three ``baton scheduler`` processes and two workers (whose upkeep fires schedules too) on three
    schedules: each tick starts one run, the overlap policies hold across processes, and after all
    of them stopped, workers alone catch up."""
    catchup = 6.0  # above GRACE_S (5 s), the floor of every window
    add_schedule(client, keys, "s", EVERY_SECOND, task="nightly report", overlap="allow", catchup_s=catchup)
    add_schedule(client, keys, "k", EVERY_SECOND, task="t", overlap="skip", catchup_s=catchup)
    add_schedule(client, keys, "b", EVERY_SECOND, task="t", overlap="buffer_one", catchup_s=catchup)
    # no planner worker: every run stays queued at the entry role, so "k" and "b" overlap each tick
    workers.env.update({"BATON_MODEL": "echo", "BATON_UPKEEP_POLL_S": "0.1"})
    for role in ("researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(client)
    procs = _schedulers(redis_url, 3)
    try:
        ready = len(_ticks(client, keys))
        wait_for(lambda: len(_ticks(client, keys)) >= ready + 6, timeout=120)
        assert len(_runs(client, keys, "k")) == 1 and len(_runs(client, keys, "b")) == 1
        buffered = schedule_state(client, keys, "b").buffered
        assert buffered > 0
        for name in ("k", "b"):  # the runs end: "skip" fires its next tick, "buffer_one" its held one
            cancel_run(client, keys, _runs(client, keys, name)[0])
        wait_for(lambda: len(_runs(client, keys, "k")) == 2 and len(_runs(client, keys, "b")) == 2, timeout=60)
        assert buffered in [t for t, _ in _ticks(client, keys, "b")]
    finally:
        _stop(procs)
        for w in workers.procs:
            w.send_signal(signal.SIGTERM)
        for w in workers.procs:
            assert w.wait(timeout=60) == 0, workers.logs()
    fired = [t for t, _ in _ticks(client, keys)]
    assert Counter(fired).most_common(1)[0][1] == 1  # no tick started two runs
    assert fired == list(range(fired[0], fired[-1] + 1))  # and none was missed
    assert len(_runs(client, keys, "k")) == 2 and len(_runs(client, keys, "b")) == 2  # no overlap slipped through
    last = fired[-1]
    # every scheduler and worker is down; wait past the catch-up window, then start one worker
    wait_for(lambda: time.time() > last + catchup + 4, timeout=60)
    workers.spawn("researcher")
    try:
        wait_for(lambda: len(_ticks(client, keys)) >= len(fired) + 3, timeout=120)
    finally:
        workers.stop_all()
    after = [(t, at) for t, at in _ticks(client, keys) if t > last]
    ticks_after = [t for t, _ in after]
    assert ticks_after == list(range(ticks_after[0], ticks_after[-1] + 1))  # each once, in order
    # the first pass came at least catchup + 4 s after the last tick: ticks older than the window
    # (last+1 .. last+4 at least) were skipped, and no run was started for a tick older than it
    assert ticks_after[0] - last >= 5
    assert any(at - t >= 1 for t, at in after)  # missed ticks inside the window fired late
    assert all(at - t <= catchup + 3 for t, at in after)  # (3 s: a loaded machine's submit time)


def test_worker_schedules_setting(redis_url: str, client: redis.Redis, keys: Keys, workers: Workers) -> None:
    """``BATON_WORKER_SCHEDULES=0``: a worker fires no schedule."""
    add_schedule(client, keys, "s", EVERY_SECOND, task="t", overlap="allow")
    workers.env.update({"BATON_MODEL": "echo", "BATON_UPKEEP_POLL_S": "0.1", "BATON_WORKER_SCHEDULES": "0"})
    workers.spawn("researcher")
    workers.wait_ready(client)
    time.sleep(3)  # three ticks go by
    assert _ticks(client, keys) == []
    workers.spawn("summarizer", env={"BATON_WORKER_SCHEDULES": "1"})
    wait_for(lambda: len(_ticks(client, keys)) >= 2, timeout=60)


def _pass(client: redis.Redis, keys: Keys, at: float) -> list[str]:
    return fire_due(client, keys, Settings(), now=at)


@pytest.mark.parametrize("overlap", ["skip", "buffer_one", "allow"])
def test_overlap_policies(overlap: str, redis_url: str, client: redis.Redis, keys: Keys) -> None:
    s = add_schedule(client, keys, "s", EVERY_SECOND, task="t", overlap=overlap, catchup_s=0)  # type: ignore[arg-type]
    t0 = math.floor(s.created_at) + 1
    first = _pass(client, keys, t0)  # no worker runs: each run stays queued
    assert len(first) == 1
    _pass(client, keys, t0 + 1)
    _pass(client, keys, t0 + 2)
    if overlap == "allow":
        assert [t for t, _ in _ticks(client, keys)] == [t0, t0 + 1, t0 + 2]
        return
    assert [t for t, _ in _ticks(client, keys)] == [t0]
    assert schedule_state(client, keys, "s").buffered == (t0 + 1 if overlap == "buffer_one" else 0)
    cancel_run(client, keys, first[0])  # the run ends
    _pass(client, keys, t0 + 3)
    fired = [t for t, _ in _ticks(client, keys)]
    if overlap == "skip":
        assert fired == [t0, t0 + 3]
    else:  # the one buffered tick starts now; t0+2 was dropped and t0+3 waits behind the new run
        assert fired == [t0, t0 + 1]
        assert schedule_state(client, keys, "s").buffered == t0 + 3


def test_catch_up_window_and_pause(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    s = add_schedule(client, keys, "s", EVERY_SECOND, task="t", overlap="allow", catchup_s=10)
    t0 = math.floor(s.created_at) + 1
    _pass(client, keys, t0)
    _pass(client, keys, t0 + 100)  # 99 ticks missed: the last 10 fire, once each
    assert [t for t, _ in _ticks(client, keys)] == [t0, *range(t0 + 91, t0 + 101)]
    _pass(client, keys, t0 + 100)
    assert len(_ticks(client, keys)) == 11
    with Client(settings=Settings(redis_url=redis_url)) as c:
        assert c.pause_schedule("s")
        assert _pass(client, keys, t0 + 105) == []
        assert c.resume_schedule("s") and not c.resume_schedule("nosuch")
        assert [x.name for x in c.schedules()] == ["s"]
        assert c.delete_schedule("s") and c.schedules() == []
    assert parse_duration("10m") == 600 and parse_duration("30s") == 30
    with pytest.raises(ProtocolError, match="cron"):
        add_schedule(client, keys, "bad", "not cron", task="t")
    with pytest.raises(ProtocolError, match="workflow"):
        add_schedule(client, keys, "bad", EVERY_SECOND, task="t", workflow="nosuch")


def test_cli_and_api(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    env = _env(redis_url)
    done = baton("schedule", "add", "nightly", "0 3 * * *", "--task", "report", "--overlap", "buffer_one",
                 "--catchup", "10m", env=env)
    assert done.returncode == 0, done.stderr
    assert re.findall(r"\d\d:\d\d:\d\d", done.stdout) == ["03:00:00"] * 3  # the next ticks, to check it by
    every10 = baton("schedule", "add", "every10", "* * * * * */10", "--task", "t", env=env)
    shown = [sum(int(x) * m for x, m in zip(t.split(":"), (3600, 60, 1), strict=True))
             for t in re.findall(r"\d\d:\d\d:\d\d", every10.stdout)]
    assert every10.returncode == 0 and [(b - a) % 86400 for a, b in itertools.pairwise(shown)] == [10, 10]
    assert baton("schedule", "delete", "every10", env=env).returncode == 0
    s = get_schedule(client, keys, "nightly")
    assert s is not None and (s.cron, s.overlap, s.catchup_s, s.task) == ("0 3 * * *", "buffer_one", 600, "report")
    bad = baton("schedule", "add", "x", "61 * * * *", "--task", "t", env=env)
    assert bad.returncode != 0 and "cron" in bad.stderr and "Traceback" not in bad.stderr
    assert baton("schedule", "pause", "nightly", env=env).returncode == 0
    listed = baton("schedule", "list", "--json", env=env)
    assert '"paused": true' in listed.stdout
    assert baton("schedule", "resume", "nightly", env=env).returncode == 0
    assert baton("schedule", "delete", "nightly", env=env).returncode == 0
    assert baton("schedule", "delete", "nightly", env=env).returncode != 0
    with TestClient(create_app(Settings(redis_url=redis_url), SEED), base_url="http://localhost") as http:
        made = http.post("/v1/schedules", json={"name": "h", "cron": "*/5 * * * *", "task": "t", "overlap": "allow"})
        assert made.status_code == 201, made.text
        assert http.post("/v1/schedules", json={"name": "h", "cron": "nope", "task": "t"}).status_code == 422
        assert http.post("/v1/schedules/h/pause").json()["paused"] is True
        assert http.post("/v1/schedules/h/resume").json()["paused"] is False
        assert [x["name"] for x in http.get("/v1/schedules").json()["schedules"]] == ["h"]
        assert http.delete("/v1/schedules/h").status_code == 200
        assert http.get("/v1/schedules/h").status_code == 404


def test_workers_under_a_named_redis_user_leave_the_upkeep_to_the_scheduler() -> None:
    from baton.agents.upkeep import named_user

    assert not named_user("redis://localhost:6379/0")
    assert not named_user("redis://default:pw@localhost:6379/0")
    assert not named_user("redis://:pw@localhost:6379/0")
    assert named_user("redis://planner:pw@localhost:6379/0")
