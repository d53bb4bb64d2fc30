"""The atomic handoff against a real Redis: all-or-nothing, owner-checked, idempotent."""

from __future__ import annotations

import redis

from baton.broker import Handoff, Keys, Outcome, PadEntry, RoleStreams, commit, scratchpad, submit
from baton.protocol import Task, decode


def _read_one(client: redis.Redis, keys: Keys, consumer: str) -> tuple[RoleStreams, object]:
    streams = RoleStreams(client, keys, "seed", "planner", consumer)
    streams.ensure_groups()
    entries = streams.read(pending=False, count=10, block_ms=100)
    assert len(entries) == 1
    return streams, entries[0]


def _handoff(keys: Keys, entry: object, task: Task) -> Handoff:
    nxt = Task(run_id=task.run_id, role="researcher", task="next")
    from baton.protocol import encode

    return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id,  # type: ignore[arg-type]
                   outputs=[(keys.run_stream("seed", "researcher", task.run_id), encode(nxt))],
                   pad=("Alice", entry.id, b'{"task": "t", "response": "r"}'),  # type: ignore[attr-defined]
                   record={"status": "running", "role": "researcher"})


def test_commit_publishes_writes_and_acks_in_one_step(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="run1", role="planner", task="t")
    submit(client, keys, task)
    streams, entry = _read_one(client, keys, "c1")
    assert commit(client, keys, "planner", "c1", [_handoff(keys, entry, task)]) == [Outcome.COMMITTED]
    assert client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0
    out = client.xrange(keys.stream("seed", "researcher"))
    assert len(out) == 1 and isinstance(decode(out[0][1][b"msg"]), Task)
    assert scratchpad(client, keys, "run1", "Alice") == [PadEntry(task="t", response="r")]
    assert client.hget(keys.run("run1"), "status") == b"running"


def test_stale_consumer_cannot_commit(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="run2", role="planner", task="t")
    submit(client, keys, task)
    streams, entry = _read_one(client, keys, "slow")
    client.xclaim(keys.stream("seed", "planner"), "planner", "thief", 0, [entry.id])  # type: ignore[attr-defined]
    assert commit(client, keys, "planner", "slow", [_handoff(keys, entry, task)]) == [Outcome.STALE]
    assert client.xlen(keys.stream("seed", "researcher")) == 0
    assert scratchpad(client, keys, "run2", "Alice") == []
    assert commit(client, keys, "planner", "thief", [_handoff(keys, entry, task)]) == [Outcome.COMMITTED]
    assert client.xlen(keys.stream("seed", "researcher")) == 1


def test_redelivered_message_is_not_handed_off_twice(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="run3", role="planner", task="t")
    submit(client, keys, task)
    from baton.protocol import encode

    client.xadd(keys.stream("seed", "planner"), {"msg": encode(task)})  # the same message again
    streams = RoleStreams(client, keys, "seed", "planner", "c")
    entries = streams.read(pending=False, count=10, block_ms=100)
    outcomes = commit(client, keys, "planner", "c", [_handoff(keys, e, task) for e in entries])
    assert outcomes == [Outcome.COMMITTED, Outcome.DUPLICATE]
    assert client.xlen(keys.stream("seed", "researcher")) == 1
    assert client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0
