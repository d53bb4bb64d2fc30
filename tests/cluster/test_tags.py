"""Partition hash tags spread over the slot space (no server needed)."""

from __future__ import annotations

import pytest
from redis.crc import key_slot

from baton.broker import Keys
from baton.broker.hashtags import slot_share


@pytest.mark.parametrize("partitions", [2, 3, 6, 12, 64])
def test_each_partition_tag_hashes_into_its_share_of_the_slots(partitions: int) -> None:
    keys = Keys("baton", partitions)
    for p in range(partitions):
        tag = keys.tag(p)
        slot = key_slot(f"{tag}:x".encode())
        assert slot in slot_share(p, partitions), (p, tag, slot)
        assert slot * partitions // 16384 == p


def test_one_partition_keeps_the_plain_tag_and_stream_keys_parse_back() -> None:
    assert Keys().tag(0) == "baton:{p0}"
    keys = Keys("dep", 6)
    for p in range(6):
        name = keys.parse_stream(keys.stream("research_fanout", "researcher", p))
        assert name is not None and (name.workflow, name.role, name.partition) == ("research_fanout", "researcher", p)
    assert keys.parse_stream("dep:{p1}:wf:w:stream:r") is not None  # the old form still parses
    assert keys.parse_stream("other:{p1.3}:wf:w:stream:r") is None


def test_every_key_of_a_run_shares_one_slot() -> None:
    keys = Keys("baton", 6)
    run = "run-42"
    p = keys.partition(run)
    slots = {key_slot(k.encode()) for k in (
        keys.run(run), keys.run_stream("seed", "planner", run), keys.pad(run, "Alice"), keys.pads(run),
        keys.events(run), keys.done(run, "1-0"), keys.join(run, "g"), keys.run_cancelled(run), keys.runs(p),
        keys.results(p), keys.dead(p), keys.reviews(p), keys.tool_replies(run, "c"), keys.journal(run, "1-0"),
        keys.journal_hops(run))}
    assert len(slots) == 1


def test_a_partition_outside_the_range_is_refused() -> None:
    with pytest.raises(ValueError, match="out of range"):
        Keys("baton", 3).tag(3)
