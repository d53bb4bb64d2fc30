"""Cancel, deadlines, hop limit, trimming that never drops pending entries, TTLs."""

from __future__ import annotations

import json
import time

import redis

from baton.broker import Keys, RoleStreams, ensure_group, get_run, scratchpad, submit
from baton.broker.janitor import Janitor, trim_floor, trim_stream
from baton.protocol import Error, Task, decode
from tests.conftest import Workers
from tests.reliability.conftest import wait_until
from tests.reliability.test_recovery import baton


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
    wait_until(lambda: client.xlen(keys.stream("seed", "researcher")) == 1
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
    wait_until(lambda: client.xlen(keys.dead()) == 1, what="the hop limit", logs=echo.logs)
    (_, fields), = client.xrange(keys.dead())
    assert "hop limit" in decode(fields[b"msg"]).reason  # type: ignore[union-attr]
    assert (get_run(client, keys, "looping") or {})["status"] == "failed"


def test_trimming_keeps_pending_and_unread_entries(client: redis.Redis, keys: Keys) -> None:
    stream = keys.stream("seed", "planner")
    ensure_group(client, stream, "planner")
    ids = [client.xadd(stream, {"msg": f"m{i}".encode()}).decode() for i in range(8)]
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    got = reader.read(pending=False, count=6, block_ms=100)  # m0..m5 delivered, m6 m7 unread
    assert [e.id for e in got] == ids[:6]
    client.xack(stream, "planner", ids[0], ids[1], ids[3], ids[5])  # m2 and m4 stay pending
    assert trim_floor(client, stream) == ids[2]
    assert trim_stream(client, stream) == 2  # only m0 and m1: below the oldest pending entry
    left = [i.decode() for i, _ in client.xrange(stream)]
    assert left == ids[2:]
    mine = reader.read(pending=True, count=10, block_ms=None)
    assert [(e.id, e.data) for e in mine] == [(ids[2], b"m2"), (ids[4], b"m4")]
    # a second group that has read nothing holds the floor at the start
    ensure_group(client, stream, "audit")
    assert trim_stream(client, stream) == 0
    assert trim_floor(client, keys.stream("seed", "nobody")) is None


def test_workers_trim_their_stream_periodically_and_records_expire(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    env = {"BATON_JANITOR_INTERVAL_S": "0.3", "BATON_RECORD_TTL_S": "3600"}
    for role in ("planner", "researcher", "summarizer"):
        echo.spawn(role, env=env)
    run_ids = [submit(client, keys, Task(run_id=f"ttl-{i}", role="planner", task="t"), record_ttl_s=3600)
               for i in range(3)]
    wait_until(lambda: all((get_run(client, keys, r) or {}).get("status") == "done" for r in run_ids),
               what="the runs", logs=echo.logs)
    wait_until(lambda: all(client.xlen(keys.stream("seed", r)) == 0 for r in ("planner", "researcher", "summarizer")),
               what="the workers' janitors to trim acknowledged history", logs=echo.logs)
    for run_id in run_ids:
        for key in (keys.run(run_id), keys.pad(run_id, "Alice"), keys.pad(run_id, "Eve"), keys.pads(run_id)):
            assert 0 < client.ttl(key) <= 3600, key
    assert client.xlen(keys.results()) == 3  # results are kept for results_retention_s


def test_janitor_command_and_index_clean_up(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    submit(client, keys, Task(run_id="old", role="planner", task="t"))
    client.zadd(keys.runs(), {"expired-run": 1.0})
    client.sadd(keys.cancelled(), "expired-run")
    client.xadd(keys.results(), {"msg": b"ancient"}, id="1000-0")
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    (entry,) = reader.read(pending=False, count=1, block_ms=100)
    client.xack(keys.stream("seed", "planner"), "planner", entry.id)
    proc = baton("janitor", "--json", env={**echo.env, "BATON_RECORD_TTL_S": "60"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"trimmed": {keys.stream("seed", "planner"): 1}, "results_trimmed": 1, "runs_forgotten": 1,
                      "cancelled_forgotten": 1}
    assert client.zscore(keys.runs(), "old") is not None  # the fresh run stays indexed
    unread = client.xadd(keys.stream("seed", "planner"), {"msg": b"x"})
    assert Janitor(client, keys).sweep().trimmed == {}  # not yet delivered: kept
    assert client.xrange(keys.stream("seed", "planner"))[0][0] == unread
