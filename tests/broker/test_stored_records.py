"""What the broker stores beside the wire decodes once into typed Structs: scratchpad entries,
long-term memory and reviews, including hand-written or damaged values."""

from __future__ import annotations

import redis

from baton.broker import Keys, PadEntry, PadMeta, PadTool, scratchpad
from baton.broker.memory import agent_memory, remember
from baton.broker.pads import decode_pad, encode_pad
from baton.broker.reviews import VIEW_FIELDS, decode_review, find_review
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
