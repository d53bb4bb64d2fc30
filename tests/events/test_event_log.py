"""The event log against a real Redis: codec, append and read, resume, retention, atomic writes."""

from __future__ import annotations

import asyncio
import json

import pytest
import redis
import redis.asyncio

from baton.broker import (
    Handoff,
    Keys,
    Outcome,
    Retention,
    RoleStreams,
    aiter_events,
    append_batch,
    append_events,
    aread_events,
    cancel_run,
    commit,
    iter_events,
    read_events,
    submit,
)
from baton.protocol import (
    Cancelled,
    Done,
    Event,
    HopFinished,
    ProtocolError,
    Queued,
    Task,
    Tokens,
    decode_event,
    encode_event,
    schema,
)


def _types(entries: list[tuple[str, Event]]) -> list[str]:
    return [type(e).__name__ for _, e in entries]


def test_events_round_trip_and_bad_ones_get_a_reason() -> None:
    ev = Tokens(run_id="r1", role="planner", agent="Alice", hop=2, msg_id="m1", text="hé", index=3)
    assert decode_event(encode_event(ev)) == ev
    assert json.loads(encode_event(ev))["type"] == "tokens"
    with pytest.raises(ProtocolError, match="invalid event"):
        decode_event(b'{"type":"tokens","run_id":"r1","text":"x","hop":-1}')
    with pytest.raises(ProtocolError, match="invalid event"):
        decode_event(b'{"type":"nope","run_id":"r1"}')
    with pytest.raises(ProtocolError, match="malformed JSON"):
        decode_event(b"{")
    with pytest.raises(ProtocolError, match="invalid event"):
        decode_event(b'{"type":"review_decided","run_id":"r1","decision":"maybe"}')


def test_schema_shows_the_event_union() -> None:
    s = schema()
    tags = set(s["events"]["discriminator"]["mapping"])  # type: ignore[index]
    assert tags == {"queued", "hop_started", "tokens", "hop_finished", "tool_call", "tool_result",
                    "review_requested", "review_decided", "custom", "waiting", "woken", "done", "failed", "cancelled"}
    assert s["$defs"]["Tokens"]["properties"]["index"]["minimum"] == 0  # type: ignore[index]
    assert "Task" in s["$defs"]  # type: ignore[operator]


def test_append_read_and_resume_after_an_event_id(client: redis.Redis, keys: Keys) -> None:
    events = [Tokens(run_id="r1", text=str(i), index=i) for i in range(5)]
    append_events(client, keys, "r1", events[:3])
    pipe = client.pipeline(transaction=True)  # inside a caller's MULTI
    append_events(pipe, keys, "r1", [encode_event(e) for e in events[3:]])
    pipe.execute()
    got = read_events(client, keys, "r1")
    assert [e for _, e in got] == events
    first_ids = [i for i, _ in got]
    assert [e for _, e in read_events(client, keys, "r1", after=first_ids[1])] == events[2:]
    assert [e for _, e in read_events(client, keys, "r1", after=first_ids[1], count=2)] == events[2:4]
    assert read_events(client, keys, "r1", after=first_ids[-1]) == []
    assert read_events(client, keys, "r1", after=first_ids[-1], block_ms=10) == []  # blocking: nothing new
    assert [e for _, e in read_events(client, keys, "r1", after=first_ids[2], block_ms=10)] == events[3:]
    assert read_events(client, keys, "other") == []


def test_live_iteration_ends_at_the_terminal_event(client: redis.Redis, keys: Keys) -> None:
    append_events(client, keys, "r2", [Queued(run_id="r2"), Done(run_id="r2", output="x"),
                                       Tokens(run_id="r2", text="late")])
    assert _types(list(iter_events(client, keys, "r2", block_ms=10))) == ["Queued", "Done"]
    assert _types(list(iter_events(client, keys, "r2", follow=False))) == ["Queued", "Done"]


def test_the_async_reader_reads_the_same(client: redis.Redis, keys: Keys, redis_url: str) -> None:
    append_events(client, keys, "r3", [Queued(run_id="r3"), Tokens(run_id="r3", text="a"),
                                       Cancelled(run_id="r3", reason="stop")])

    async def read() -> tuple[list[tuple[str, Event]], list[tuple[str, Event]], list[tuple[str, Event]]]:
        aclient = redis.asyncio.Redis.from_url(redis_url)
        try:
            everything = await aread_events(aclient, keys, "r3")
            after = await aread_events(aclient, keys, "r3", after=everything[0][0], block_ms=10)
            live = [x async for x in aiter_events(aclient, keys, "r3", block_ms=10)]
            return everything, after, live
        finally:
            await aclient.aclose()

    everything, after, live = asyncio.run(read())
    assert everything == read_events(client, keys, "r3")
    assert after == everything[1:] and live == everything


def test_retention_trims_and_expires_every_log(client: redis.Redis, keys: Keys) -> None:
    short = Keys(keys.prefix, keys.partitions, Retention(events_maxlen=10, events_ttl_s=60))
    for _ in range(3):
        append_events(client, short, "r4", [Tokens(run_id="r4", text="x", index=i) for i in range(200)])
    assert client.xlen(keys.events("r4")) < 300  # MAXLEN ~ trims whole nodes: approximately 10
    assert 0 < client.ttl(keys.events("r4")) <= 60
    task = Task(run_id="r5", role="planner", task="t")
    submit(client, Keys(keys.prefix, keys.partitions, Retention(events_maxlen=10, events_ttl_s=120)), task)
    assert 60 < client.ttl(keys.events("r5")) <= 120
    assert _types(read_events(client, keys, "r5")) == ["Queued"]
    (_, queued), = read_events(client, keys, "r5")
    assert isinstance(queued, Queued) and queued.task == "t" and queued.role == "planner"


def test_token_chunks_join_a_log_that_exists_and_keep_its_lifetime(client: redis.Redis, keys: Keys) -> None:
    kept = Keys(keys.prefix, keys.partitions, Retention(events_maxlen=50, events_ttl_s=90))
    chunks = [Tokens(run_id=r, text=f"{r}{i}", index=i) for i in range(3) for r in ("t1", "t2")]
    append_batch(client, kept, chunks)  # neither log exists: a chunk creates none (none without a lifetime)
    assert not client.exists(keys.events("t1"), keys.events("t2"))
    append_events(client, kept, "t1", [Queued(run_id="t1", role="planner", task="t")])
    client.expire(keys.events("t1"), 30)  # as the hop's hop_started set it, some time ago
    append_batch(client, kept, chunks)
    assert [e.text for _, e in read_events(client, keys, "t1") if isinstance(e, Tokens)] == ["t10", "t11", "t12"]
    assert 0 < client.ttl(keys.events("t1")) <= 30  # the chunks left the lifetime to the hop's own events
    assert not client.exists(keys.events("t2"))
    append_batch(client, kept, [Queued(run_id="t2", role="planner", task="t"), *chunks])  # other events: as ever
    assert [type(e).__name__ for _, e in read_events(client, keys, "t2")] == ["Queued", "Tokens", "Tokens", "Tokens"]
    assert 30 < client.ttl(keys.events("t2")) <= 90


def _one_entry(client: redis.Redis, keys: Keys, consumer: str) -> object:
    streams = RoleStreams(client, keys, "seed", "planner", consumer)
    streams.ensure_groups()
    (entry,) = streams.read(pending=False, count=10, block_ms=100)
    return entry


def test_hop_events_are_written_by_the_commit_once(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="r6", role="planner", task="t")
    submit(client, keys, task)
    entry = _one_entry(client, keys, "slow")
    events = [encode_event(HopFinished(run_id="r6", role="planner", msg_id=task.id, output="o")),
              encode_event(Done(run_id="r6", output="o"))]
    handoff = Handoff(entry=entry, run_id="r6", msg_id=task.id, record={"status": "done"},  # type: ignore[arg-type]
                      events=events)
    client.xclaim(keys.stream("seed", "planner"), "planner", "thief", 0, [entry.id])  # type: ignore[attr-defined]
    assert commit(client, keys, "planner", "slow", [handoff]) == [Outcome.STALE]
    assert _types(read_events(client, keys, "r6")) == ["Queued"]  # a stale commit writes no event
    kept = Keys(keys.prefix, keys.partitions, Retention(events_maxlen=50, events_ttl_s=90))
    assert commit(client, kept, "planner", "thief", [handoff]) == [Outcome.COMMITTED]
    assert _types(read_events(client, keys, "r6")) == ["Queued", "HopFinished", "Done"]
    assert 0 < client.ttl(keys.events("r6")) <= 90
    client.xadd(keys.stream("seed", "planner"), {"msg": b"{}"})  # nothing to do with the redelivery below
    client.xclaim(keys.stream("seed", "planner"), "planner", "thief", 0, [entry.id])  # type: ignore[attr-defined]
    client.xgroup_setid(keys.stream("seed", "planner"), "planner", "0")
    again = RoleStreams(client, keys, "seed", "planner", "thief").read(pending=False, count=1, block_ms=100)
    dup = Handoff(entry=again[0], run_id="r6", msg_id=task.id, events=events)
    assert commit(client, keys, "planner", "thief", [dup]) == [Outcome.DUPLICATE]
    assert _types(read_events(client, keys, "r6")) == ["Queued", "HopFinished", "Done"]


def test_cancel_writes_one_cancelled_event(client: redis.Redis, keys: Keys) -> None:
    submit(client, keys, Task(run_id="r7", role="planner", task="t"))
    assert cancel_run(client, keys, "r7") == "queued"
    assert cancel_run(client, keys, "r7") == "cancelled"  # already ended: nothing more
    assert _types(read_events(client, keys, "r7")) == ["Queued", "Cancelled"]
    assert cancel_run(client, keys, "nope") is None and read_events(client, keys, "nope") == []
