"""Priority lanes on a real Redis: lane keys, lane-ordered reads, the batch share, idle blocking."""

from __future__ import annotations

import threading

import pytest
import redis

from baton.broker import Keys, ReadOptions, RoleStreams, submit
from baton.broker.lanes import BatchShare
from baton.protocol import PRIORITIES, ProtocolError, Task, decode


@pytest.mark.parametrize("lane", PRIORITIES)
@pytest.mark.parametrize("partition", [0, 3])
def test_stream_keys_of_both_lanes_parse_back(lane: str, partition: int) -> None:
    keys = Keys("app:x", partitions=4)
    key = keys.stream("seed", "planner", partition, lane)  # type: ignore[arg-type]
    name = keys.parse_stream(key)
    assert name is not None
    assert (name.workflow, name.role, name.partition, name.lane) == ("seed", "planner", partition, lane)
    assert key.startswith(f"{keys.tag(partition)}:")  # one hash tag for every lane of a partition


def test_lane_keys_are_distinct_and_the_interactive_key_is_unchanged() -> None:
    keys = Keys()
    assert keys.stream("seed", "planner") == "baton:{p0}:wf:seed:stream:planner"
    assert keys.lane_streams("seed", "planner") == ["baton:{p0}:wf:seed:stream:planner",
                                                    "baton:{p0}:wf:seed:lane:batch:stream:planner"]
    assert keys.parse_stream("baton:{p0}:wf:seed:lane:interactive:stream:planner") is None  # one spelling per lane
    assert keys.parse_stream("baton:{p0}:wf:seed:lane:urgent:stream:planner") is None


def test_the_stream_pattern_finds_both_lanes_and_no_other_role(client: redis.Redis, keys: Keys) -> None:
    for role in ("planner", "planner2"):
        for stream in keys.lane_streams("seed", role):
            client.xadd(stream, {"msg": b"x"})
    found = sorted(k.decode() for k in client.scan_iter(match=keys.stream_pattern("seed", "planner")))
    assert found == sorted(keys.lane_streams("seed", "planner"))
    assert len(list(client.scan_iter(match=keys.stream_pattern()))) == 4


def _submit(client: redis.Redis, keys: Keys, run_id: str, priority: str) -> None:
    submit(client, keys, Task(run_id=run_id, role="planner", task="t", priority=priority))  # type: ignore[arg-type]


def _lanes(keys: Keys, entries: list) -> list[str]:  # type: ignore[type-arg]
    names = [keys.parse_stream(e.stream) for e in entries]
    return [n.lane if n else "?" for n in names]


def test_a_batch_submission_goes_to_the_batch_stream_and_is_recorded(client: redis.Redis, keys: Keys) -> None:
    _submit(client, keys, "b1", "batch")
    (_, fields), = client.xrange(keys.stream("seed", "planner", 0, "batch"))
    task = decode(fields[b"msg"])
    assert isinstance(task, Task) and task.priority == "batch"
    assert client.xlen(keys.stream("seed", "planner")) == 0
    assert client.hget(keys.run("b1"), "priority") == b"batch"


def test_a_bad_priority_is_refused_before_anything_is_written(client: redis.Redis, keys: Keys) -> None:
    with pytest.raises(ProtocolError, match=r"priority"):
        _submit(client, keys, "r", "urgent")
    assert client.keys("*") == []


def test_interactive_work_is_read_first_and_batch_gets_its_share(client: redis.Redis, keys: Keys) -> None:
    for i in range(40):
        _submit(client, keys, f"b{i}", "batch")
    for i in range(40):
        _submit(client, keys, f"i{i}", "interactive")
    reader = RoleStreams(client, keys, "seed", "planner", "c", options=ReadOptions(batch_share=0.25))
    reader.ensure_groups()
    first = reader.read(pending=False, count=8, block_ms=None)
    assert _lanes(keys, first).count("batch") == 2 and len(first) == 8  # a quarter of the slots
    seen = _lanes(keys, first)
    while len(seen) < 48:
        seen += _lanes(keys, reader.read(pending=False, count=8, block_ms=None))
    assert seen.count("interactive") == 36 and seen.count("batch") == 12  # 25% while both lanes wait
    rest = _lanes(keys, reader.read(pending=False, count=8, block_ms=None))
    assert rest.count("interactive") == 4 and rest.count("batch") == 2  # no batch top-up beside interactive work
    assert _lanes(keys, reader.read(pending=False, count=8, block_ms=None)) == ["batch"] * 8  # spare slots: batch


def test_with_a_share_of_one_read_in_ten_a_single_slot_reader_still_serves_batch(client: redis.Redis,
                                                                                  keys: Keys) -> None:
    for i in range(5):
        _submit(client, keys, f"b{i}", "batch")
    for i in range(30):
        _submit(client, keys, f"i{i}", "interactive")
    reader = RoleStreams(client, keys, "seed", "planner", "c", options=ReadOptions(batch_share=0.1))
    reader.ensure_groups()
    seen = [lane for _ in range(20) for lane in _lanes(keys, reader.read(pending=False, count=1, block_ms=None))]
    assert seen.count("batch") == 2 and seen.index("batch") == 9


def test_own_pending_entries_of_both_lanes_are_read_again(client: redis.Redis, keys: Keys) -> None:
    _submit(client, keys, "b", "batch")
    _submit(client, keys, "i", "interactive")
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    reader.ensure_groups()
    assert _lanes(keys, reader.read(pending=False, count=8, block_ms=None)) == ["interactive"]
    assert _lanes(keys, reader.read(pending=False, count=8, block_ms=None)) == ["batch"]
    again = reader.read(pending=True, count=8, block_ms=None)
    assert sorted(_lanes(keys, again)) == ["batch", "interactive"] and all(e.deliveries == 2 for e in again)


def test_dead_consumers_batch_work_is_reclaimed(client: redis.Redis, keys: Keys) -> None:
    _submit(client, keys, "b", "batch")
    dead = RoleStreams(client, keys, "seed", "planner", "dead")
    dead.ensure_groups()
    assert len(dead.read(pending=False, count=1, block_ms=None)) == 1
    me = RoleStreams(client, keys, "seed", "planner", "me")
    assert me.reclaim(lease_ms=60_000) == 1
    assert _lanes(keys, me.read(pending=True, count=8, block_ms=None)) == ["batch"]


@pytest.mark.parametrize("priority", PRIORITIES)
def test_an_idle_reader_blocks_once_and_wakes_for_either_lane(client: redis.Redis, keys: Keys, priority: str) -> None:
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    reader.ensure_groups()
    timer = threading.Timer(0.3, _submit, (client, keys, "late", priority))
    timer.start()
    got = reader.read(pending=False, count=8, block_ms=20_000)
    timer.join()
    assert _lanes(keys, got) == [priority]  # a block that ran out would have returned nothing


def test_the_share_is_a_fraction() -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        BatchShare(1.5)


def test_a_top_up_read_beside_interactive_work_takes_interactive_work_only(client: redis.Redis, keys: Keys) -> None:
    for i in range(4):
        _submit(client, keys, f"b{i}", "batch")
    _submit(client, keys, "i0", "interactive")
    reader = RoleStreams(client, keys, "seed", "planner", "c", options=ReadOptions(batch_share=0.0))
    reader.ensure_groups()
    first = reader.read(pending=False, count=8, block_ms=None)
    assert _lanes(keys, first) == ["interactive"]
    assert reader.read_more(first, count=7) == []  # the batch tasks wait for a read of their own
    _submit(client, keys, "i1", "interactive")
    assert _lanes(keys, reader.read_more(first, count=7)) == ["interactive"]
    batch = reader.read(pending=False, count=8, block_ms=None)
    assert _lanes(keys, batch) == ["batch"] * 4
    assert reader.read_more(batch, count=4) == []


def test_an_idle_reader_blocks_at_once_and_orders_lanes_again_once_a_backlog_builds(client: redis.Redis,
                                                                                    keys: Keys) -> None:
    reader = RoleStreams(client, keys, "seed", "planner", "c", options=ReadOptions(batch_share=0.25))
    reader.ensure_groups()
    assert not reader.idle
    assert reader.read(pending=False, count=8, block_ms=10) == []  # both lanes found empty
    assert reader.share.drained and reader.idle  # the next read blocks at once: nothing is arriving
    _submit(client, keys, "i0", "interactive")
    calls0 = _xreadgroup_calls(client)
    assert _lanes(keys, reader.read(pending=False, count=8, block_ms=1000)) == ["interactive"]
    assert _xreadgroup_calls(client) - calls0 == 1  # a lone task: one blocking read over every lane
    assert reader.share.drained
    for i in range(12):
        _submit(client, keys, f"b{i}", "batch")
    assert _lanes(keys, reader.read(pending=False, count=8, block_ms=1000)) == ["batch"] * 8  # a full read
    assert not reader.share.drained and not reader.idle
    for i in range(8):
        _submit(client, keys, f"i{i + 1}", "interactive")
    got = _lanes(keys, reader.read(pending=False, count=8, block_ms=1000))
    assert len(got) == 8 and got.count("batch") <= 3  # the backlog is read by lane again: batch gets its share


def _xreadgroup_calls(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return int(stats.get("cmdstat_xreadgroup", {}).get("calls", 0))
