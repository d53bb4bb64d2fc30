"""Reads, delivery counts, leases and reclaiming on a real Redis."""

from __future__ import annotations

import time

import pytest
import redis

from baton.broker import Heartbeat, Keys, RoleStreams, ensure_group, submit
from baton.protocol import ProtocolError, Task


def test_group_creation_is_idempotent_and_starts_at_zero(client: redis.Redis, keys: Keys) -> None:
    client.xadd(keys.stream("seed", "planner"), {"msg": b"early"})
    ensure_group(client, keys.stream("seed", "planner"), "planner")
    ensure_group(client, keys.stream("seed", "planner"), "planner")
    streams = RoleStreams(client, keys, "seed", "planner", "c")
    assert [e.data for e in streams.read(pending=False, count=5, block_ms=50)] == [b"early"]


def test_pending_entries_are_reread_with_delivery_counts(client: redis.Redis, keys: Keys) -> None:
    submit(client, keys, Task(run_id="r", role="planner", task="t"))
    streams = RoleStreams(client, keys, "seed", "planner", "c")
    assert streams.read(pending=False, count=5, block_ms=50)[0].deliveries == 1
    again = streams.read(pending=True, count=5, block_ms=None)
    assert len(again) == 1 and again[0].deliveries == 2


def test_missing_group_is_recreated(client: redis.Redis, keys: Keys) -> None:
    streams = RoleStreams(client, keys, "seed", "planner", "c")
    assert streams.read(pending=False, count=1, block_ms=10) == []
    assert client.xinfo_groups(keys.stream("seed", "planner"))[0]["name"] == b"planner"


def test_dead_consumer_work_is_reclaimed_live_consumer_work_is_not(client: redis.Redis, keys: Keys) -> None:
    for i in range(2):
        submit(client, keys, Task(run_id=f"r{i}", role="planner", task="t"))
    dead = RoleStreams(client, keys, "seed", "planner", "dead")
    live = RoleStreams(client, keys, "seed", "planner", "live")
    dead.read(pending=False, count=1, block_ms=50)
    live.beat(Heartbeat(consumer="live", role="planner", host="h", pid=1, at=time.time()), ttl_s=30)
    live.read(pending=False, count=1, block_ms=50)
    me = RoleStreams(client, keys, "seed", "planner", "me")
    assert me.reclaim(lease_ms=60_000) == 1  # only the dead consumer's entry
    mine = me.read(pending=True, count=10, block_ms=None)
    assert len(mine) == 1 and mine[0].deliveries >= 2
    names = {c["name"] for c in client.xinfo_consumers(keys.stream("seed", "planner"), "planner")}
    assert b"live" in names


def test_idle_past_lease_is_reclaimed_and_touch_renews_lease(client: redis.Redis, keys: Keys) -> None:
    submit(client, keys, Task(run_id="r", role="planner", task="t"))
    slow = RoleStreams(client, keys, "seed", "planner", "slow")
    slow.beat(Heartbeat(consumer="slow", role="planner", host="h", pid=1, at=time.time()), ttl_s=30)
    entries = slow.read(pending=False, count=1, block_ms=50)
    other = RoleStreams(client, keys, "seed", "planner", "other")
    time.sleep(0.3)  # the sleeps are the test: outlive the 200 ms lease, once renewed by touch, once not
    slow.touch(entries)
    assert other.reclaim(lease_ms=200) == 0
    time.sleep(0.3)
    assert other.reclaim(lease_ms=200) == 1


def test_dead_consumer_with_nothing_pending_is_removed(client: redis.Redis, keys: Keys) -> None:
    streams = RoleStreams(client, keys, "seed", "planner", "gone")
    streams.ensure_groups()
    streams.read(pending=False, count=1, block_ms=10)
    time.sleep(0.05)  # the sleep is the test: "gone" must be idle past the 10 ms lease
    RoleStreams(client, keys, "seed", "planner", "me").reclaim(lease_ms=10)
    names = {c["name"] for c in client.xinfo_consumers(keys.stream("seed", "planner"), "planner")}
    assert b"gone" not in names


def test_names_that_are_not_key_safe_are_refused(client: redis.Redis, keys: Keys) -> None:
    with pytest.raises(ValueError, match="workflow name 'my flow' is not key-safe"):
        RoleStreams(client, keys, "my flow", "planner", "c")
    with pytest.raises(ProtocolError, match=r"at `\$.workflow`"):
        submit(client, keys, Task(run_id="r", role="planner", task="t", workflow="a:b"))
    assert client.keys("*") == []  # nothing written
