"""Durable waits of code roles (``ctx.sleep``, ``ctx.wait_for``) in real worker processes against a
real Redis: parked runs free their worker, wake exactly once with several tickers, take signals sent
before or after they wait, time out with a reason or a declared route, and survive worker and Redis
restarts (``tests/reliability/test_waits.py``)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis

from baton.broker import Keys, get_run, submit
from baton.broker.events import read_events
from baton.broker.timers import SignalRefused, list_waits, send_signal
from baton.protocol import Task, Woken
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

APP = "tests.e2e.waitapps:timers"
FAST = {"BATON_MODEL": "echo", "BATON_RECLAIM_INTERVAL_S": "0.2"}


def _task(run_id: str, role: str, task: str = "t") -> Task:
    return Task(run_id=run_id, role=role, task=task, workflow="timers")


def _status(client: redis.Redis, keys: Keys, run_id: str) -> str:
    return (get_run(client, keys, run_id) or {}).get("status", "")


def _woken(client: redis.Redis, keys: Keys, run_id: str) -> list[Woken]:
    return [e for _, e in read_events(client, keys, run_id, count=1000) if isinstance(e, Woken)]


def test_sleeping_runs_free_their_workers_and_wake_once_with_several_tickers(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    env = {**FAST, "BATON_TEST_FILE": str(notes), "NAP_S": "3"}
    for _ in range(3):  # three tickers; each worker runs one handler at a time
        workers.spawn("napper", "--app", APP, "--concurrency", "1", env=env)
    workers.wait_ready(client)
    run_ids = [submit(client, keys, _task(f"nap-{i}", "napper", f"t{i}")) for i in range(6)]
    # six sleeping runs on three one-at-a-time workers: the sleeps hold no worker
    wait_for(lambda: all(_status(client, keys, r) == "waiting" for r in run_ids), timeout=90,
             what="every run asleep at once", logs=workers.logs)
    waits = {w.run_id: w for w in list_waits(client, keys)}
    assert set(waits) == set(run_ids) and all(w.kind == "sleep" and w.until for w in waits.values())
    recs = wait_runs(client, keys, run_ids, timeout=90)
    assert all(recs[r]["status"] == "done" and recs[r]["result"] == f"slept t{i}"
               for i, r in enumerate(run_ids)), recs
    lines = notes.read_text().splitlines()
    for i in range(6):  # the steps before and after the sleep ran once each: the sleep replayed
        assert lines.count(f"before t{i}") == 1 and lines.count(f"after t{i}") == 1, lines
    for r in run_ids:
        assert [e.why for e in _woken(client, keys, r)] == ["timer"]  # one wake-up, however many tickers
    assert client.xlen(keys.results()) == 6
    assert list_waits(client, keys) == []


def test_signals_reach_a_waiting_run_and_are_kept_for_a_wait_not_yet_reached(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    early = submit(client, keys, _task("early", "approver", "draft"))
    assert send_signal(client, keys, early, "approval", {"by": "ann", "ok": True}) is False  # buffered
    workers.spawn("approver", "--app", APP, env={**FAST, "BATON_TEST_FILE": str(notes)})
    workers.spawn("plain_sleeper", "--app", APP, env=FAST)
    late = submit(client, keys, _task("late", "approver", "final"))
    plain = submit(client, keys, _task("plain", "plain_sleeper", "p"))
    assert wait_runs(client, keys, [early])[early]["result"] == "draft: ann said True", workers.logs()
    wait_for(lambda: _status(client, keys, late) == "waiting", what="the late run waiting", logs=workers.logs)
    (w,) = [w for w in list_waits(client, keys) if w.run_id == late]
    assert (w.kind, w.name, w.until) == ("signal", "approval", None)
    assert send_signal(client, keys, late, "approval", {"by": "bob", "ok": False}) is True  # taken at once
    wait_for(lambda: any(w.name == "go" for w in list_waits(client, keys)), what="the plain handler waiting for go",
             logs=workers.logs)
    assert send_signal(client, keys, plain, "go", 42) is True
    recs = wait_runs(client, keys, [late, plain])
    assert recs[late]["result"] == "final: bob said False" and recs[plain]["result"] == "p 42", workers.logs()
    assert sorted(notes.read_text().splitlines()) == ["asked draft", "asked final"]
    with pytest.raises(SignalRefused) as ended:
        send_signal(client, keys, late, "approval", {})
    assert ended.value.status == 409 and "has ended (done)" in ended.value.reason
    with pytest.raises(SignalRefused) as unknown:
        send_signal(client, keys, "no-such-run", "approval", {})
    assert unknown.value.status == 404


def test_a_wait_past_its_timeout_fails_the_run_or_takes_its_route(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    workers.spawn("--app", APP, "--all-roles", env={**FAST, "WAIT_S": "1"})
    runs = {role: submit(client, keys, _task(f"to-{role}", role, "x")) for role in ("impatient", "patient", "routed")}
    recs = wait_runs(client, keys, list(runs.values()), timeout=90)
    failed = recs[runs["impatient"]]
    assert failed["status"] == "failed", recs
    assert "WaitTimeout: no signal 'never' came within its timeout of 1s" in failed["error"], failed
    assert "waitapps.py" in failed["error"]  # the frame is the handler's, not baton's
    assert recs[runs["patient"]]["result"] == "gave up: no signal 'never' came within its timeout of 1s"
    assert recs[runs["routed"]]["result"] == "escalated x"
    assert [e.why for e in _woken(client, keys, runs["routed"])] == ["timeout"]


def test_baton_schedulers_wake_timers_once_when_the_workers_tick_rarely(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    notes = tmp_path / "notes.txt"
    env = {**FAST, "BATON_RECLAIM_INTERVAL_S": "3600", "BATON_TEST_FILE": str(notes), "NAP_S": "1"}
    workers.spawn("napper", "--app", APP, env=env)  # its own ticker ticks at start, then in an hour
    workers.wait_ready(client)
    run_ids = [submit(client, keys, _task(f"sched-{i}", "napper", f"s{i}")) for i in range(3)]
    wait_for(lambda: all(_status(client, keys, r) == "waiting" for r in run_ids), what="the runs asleep",
             logs=workers.logs)
    schedulers = [subprocess.Popen([sys.executable, "-m", "baton", "scheduler", "--poll", "0.1"], cwd=ROOT,
                                   env={**workers.env, **env}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                  for _ in range(3)]
    try:
        recs = wait_runs(client, keys, run_ids, timeout=90)
    finally:
        for p in schedulers:
            p.terminate()
            p.wait(30)
    assert all(recs[r]["status"] == "done" for r in run_ids), workers.logs()
    for r in run_ids:
        assert [e.why for e in _woken(client, keys, r)] == ["timer"]
    assert sorted(notes.read_text().splitlines()) == sorted(f"{w} s{i}" for i in range(3) for w in ("before", "after"))
