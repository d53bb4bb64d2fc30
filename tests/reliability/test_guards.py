"""Run guards with real workers: cancel, deadlines, the hop limit (the janitor is tested in tests/broker)."""

from __future__ import annotations

import time

import redis

from baton.broker import Keys, get_run, scratchpad, submit
from baton.protocol import Error, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.waiting import wait_for


def _errors(client: redis.Redis, keys: Keys) -> dict[str, str]:
    msgs = [decode(f[b"msg"]) for _, f in client.xrange(keys.results())]
    return {m.run_id: m.reason for m in msgs if isinstance(m, Error)}


def test_cancel_and_deadline_stop_a_run_without_calling_the_model(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    cancelled = submit(client, keys, Task(run_id="to-cancel", role="planner", task="never run"))
    late = submit(client, keys, Task(run_id="too-late", role="planner", task="never run",
                                     deadline=time.time() - 1))
    fine = submit(client, keys, Task(run_id="fine", role="planner", task="run me", deadline=time.time() + 3600))
    proc = baton("cancel", cancelled, env=echo.env)
    assert proc.returncode == 0 and "cancelled to-cancel (was queued)" in proc.stdout, proc.stderr
    echo.spawn("planner")
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1
               and client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0
               and client.xinfo_groups(keys.stream("seed", "planner"))[0]["lag"] == 0,
               what="the planner to consume all three", logs=echo.logs)
    (_, fields), = client.xrange(keys.stream("seed", "researcher"))
    assert decode(fields[b"msg"]).run_id == fine
    assert (get_run(client, keys, cancelled) or {})["status"] == "cancelled"
    rec = get_run(client, keys, late) or {}
    assert rec["status"] == "failed" and "deadline passed" in rec["error"]
    errors = _errors(client, keys)  # published by the worker's guard, so waiters wake up
    assert errors[cancelled] == "run cancelled" and "deadline passed" in errors[late]
    assert scratchpad(client, keys, cancelled, "Alice") == [] and scratchpad(client, keys, late, "Alice") == []
    assert client.xlen(keys.dead()) == 0
    again = baton("cancel", cancelled, env=echo.env)
    assert again.returncode == 1 and "already finished (cancelled)" in again.stderr
    unknown = baton("cancel", "no-such-run", env=echo.env)
    assert unknown.returncode == 1 and unknown.stderr.count("\n") == 1 and "no run 'no-such-run'" in unknown.stderr


def test_hop_limit_dead_letters_a_looping_run(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    echo.spawn("planner")
    submit(client, keys, Task(run_id="looping", role="planner", task="again", hop=5, max_hops=5))
    wait_for(lambda: client.xlen(keys.dead()) == 1, what="the hop limit", logs=echo.logs)
    (_, fields), = client.xrange(keys.dead())
    assert "hop limit" in decode(fields[b"msg"]).reason  # type: ignore[union-attr]
    assert (get_run(client, keys, "looping") or {})["status"] == "failed"
