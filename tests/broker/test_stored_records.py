"""What the broker stores beside the wire decodes once into typed Structs: scratchpad entries,
long-term memory and reviews, including hand-written or damaged values."""

from __future__ import annotations

import redis

from baton.broker import Keys, PadEntry, PadMeta, PadTool, scratchpad
from baton.broker.memory import agent_memory, remember
from baton.broker.pads import decode_pad, encode_pad
from baton.broker.records import runs_over
from baton.broker.reviews import VIEW_FIELDS, decode_review, find_review
from baton.broker.schedules import ScheduleState, schedule_state
from baton.broker.threads import get_thread
from baton.broker.timers import WaitRecord, decode_wait
from baton.protocol import ReviewStatus, Task, encode


def test_a_scratchpad_entry_round_trips_typed_and_in_entry_order(client: redis.Redis, keys: Keys) -> None:
    entry = PadEntry(task="t", response="r", meta=PadMeta(msg_id="m", consumer="c", role="planner", hop=2,
                                                          tokens=7, tools=[PadTool(tool="calc", args={"x": "1"})]))
    client.hset(keys.pad("r1", "Alice"), mapping={"10-1": encode_pad(entry), "9-5": b'{"task": "first"}'})
    first, second = scratchpad(client, keys, "r1", "Alice")  # 9-5 sorts before 10-1 (numerically)
    assert first == PadEntry(task="first") and first.meta.tokens == 0 and first.meta.tools == []
    assert second == entry and second.meta.tools[0].tool == "calc"


def test_a_damaged_scratchpad_entry_keeps_what_converts() -> None:
    bad = decode_pad(b'{"task": "t", "response": 5, "meta": {"hop": "two", "tokens": 3, "role": "x"}}')
    assert (bad.task, bad.response, bad.meta.tokens, bad.meta.role, bad.meta.hop) == ("t", "", 3, "x", 0)
    assert decode_pad(b"not json") == PadEntry() and decode_pad(b"[1]") == PadEntry()


def test_long_term_memory_is_typed_and_oldest_first(client: redis.Redis, keys: Keys) -> None:
    remember(client, keys, "Ann", "m1", "one", "uno")
    remember(client, keys, "Ann", "m2", "two", "dos")
    assert [(e.task, e.response) for e in agent_memory(client, keys, "Ann", 5)] == [("one", "uno"), ("two", "dos")]


def test_a_review_hash_decodes_typed_with_its_parked_task(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="r9", role="planner", task="plan")
    client.hset(keys.run("r9"), "review", "rv1")
    client.hset(keys.review("r9", "rv1"), mapping={
        "review_id": "rv1", "run_id": "r9", "hop": "1", "tokens": "4", "requested_at": "12.5", "deadline": "",
        "status": "pending", "msg": encode(task), "decided_at": "soon"})
    review = find_review(client, keys, "r9")
    assert review is not None and review.pending and review.status is ReviewStatus.PENDING
    assert (review.hop, review.tokens, review.requested_at, review.deadline, review.decided_at) == (1, 4, 12.5, None,
                                                                                                   None)
    assert list(review.view()) == list(VIEW_FIELDS) and "prompt" not in review.view()
    found = decode_review(client.hgetall(keys.review("r9", "rv1")))
    assert found is not None and found[1] == task
    assert decode_review({}) is None


def test_a_wait_record_decodes_typed_keeping_its_stamp_as_stored() -> None:
    rec = decode_wait({b"role": b"waiter", b"kind": b"signal", b"name": b"go", b"until": b"", b"deadline": b"99.5",
                       b"task_hop": b"two", b"seq": b"3", b"requested_at": b"12.250", b"done_value": b"[1]"})
    assert rec is not None
    assert (rec.role, rec.kind, rec.name, rec.until, rec.deadline, rec.task_hop) == ("waiter", "signal", "go", None,
                                                                                      99.5, 0)
    assert rec.stamp == ("3", "12.250") and rec.requested_at == 12.25 and rec.done_value == b"[1]"
    assert decode_wait({}) is None
    assert decode_wait({b"kind": b"nap"}) == WaitRecord()  # an unknown kind keeps the default


def test_runs_over_says_which_runs_ended_or_expired(client: redis.Redis, keys: Keys) -> None:
    client.hset(keys.run("live"), "status", "running")
    client.hset(keys.run("gone"), "status", "cancelled")
    assert runs_over(client, keys, ["live", "gone", "never"]) == [False, True, True]
    assert runs_over(client, keys, []) == []


def test_a_schedule_state_and_a_thread_decode_typed_keeping_what_converts(client: redis.Redis, keys: Keys) -> None:
    client.hset(keys.schedule_state("nightly"), mapping={"last_tick": "12.5", "last_run": "r1", "last_run_tick": "x",
                                                         "buffered": ""})
    assert schedule_state(client, keys, "nightly") == ScheduleState(last_tick=12.5, last_run="r1")
    client.hset(keys.thread("t1"), mapping={"id": "t1", "active": "r2", "created_at": "3", "updated_at": "soon"})
    info = get_thread(client, keys, "t1")
    assert info is not None and (info.thread_id, info.active, info.created_at, info.updated_at) == ("t1", "r2", 3.0,
                                                                                                    0.0)
    assert info.turns == [] and info.queued == [] and info.expires_in_s is None
