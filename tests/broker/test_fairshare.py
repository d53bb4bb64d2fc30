"""Fair dispatch across tenants on a real Redis: tenant stream keys, discovery, reads by weight."""

from __future__ import annotations

import fnmatch

import redis

from baton.broker import Keys, ReadOptions, RoleStreams, submit
from baton.broker.backpressure import read_backlog
from baton.broker.cancel import cancel_run
from baton.broker.ends import runs_ended
from baton.broker.fairshare import FairRead, tenant_streams
from baton.broker.tenants import partition_cap, publish_limits, sweep_caps
from baton.protocol import Task, decode
from baton.protocol.tenants import TenantLimits


def _submit(client: redis.Redis, keys: Keys, run_id: str, tenant: str, priority: str = "interactive") -> None:
    submit(client, keys, Task(run_id=run_id, role="planner", task="t", tenant=tenant,
                              priority=priority))  # type: ignore[arg-type]


def _tenants(keys: Keys, entries: list) -> list[str]:  # type: ignore[type-arg]
    names = [keys.parse_stream(e.stream) for e in entries]
    return [n.tenant if n else "?" for n in names]


def _reader(client: redis.Redis, keys: Keys, name: str = "w1") -> RoleStreams:
    streams = RoleStreams(client, keys, "seed", "planner", name)
    streams.ensure_groups()
    return streams


def test_tenant_stream_keys_parse_back_and_match_the_role_pattern() -> None:
    keys = Keys("app:x", partitions=4)
    for lane in ("interactive", "batch"):
        key = keys.stream("seed", "planner", 2, lane, "acme")  # type: ignore[arg-type]
        name = keys.parse_stream(key)
        assert name is not None and (name.tenant, name.lane, name.partition, name.role) == ("acme", lane, 2, "planner")
        assert key.startswith(f"{keys.tag(2)}:")
        assert fnmatch.fnmatchcase(key, keys.stream_pattern("seed", "planner"))  # the role's ACL and SCAN pattern
    assert Keys().stream("seed", "planner", 0, "batch", "acme") == "baton:{p0}:wf:seed:lane:batch:t:acme:stream:planner"
    assert keys.parse_stream(keys.stream("seed", "planner")).tenant == ""  # type: ignore[union-attr]


def test_a_tenants_run_goes_to_its_own_stream_and_its_partitions_tenant_set(client: redis.Redis, keys: Keys) -> None:
    _submit(client, keys, "a1", "acme")
    assert client.xlen(keys.stream("seed", "planner")) == 0
    (_, fields), = client.xrange(keys.stream("seed", "planner", 0, tenant="acme"))
    task = decode(fields[b"msg"])
    assert isinstance(task, Task) and task.tenant == "acme"
    assert client.smembers(keys.tenant_set(0)) == {b"acme"}
    assert tenant_streams(client, keys, "seed", "planner") == keys.lane_streams("seed", "planner", 0, "acme")
    assert read_backlog(client, keys, "seed", "planner").backlog == 1  # backpressure counts the tenant's backlog


def test_a_reader_finds_a_new_tenants_streams_and_reads_them(client: redis.Redis, keys: Keys) -> None:
    reader = _reader(client, keys)
    assert reader.read(pending=False, count=10, block_ms=None) == []
    _submit(client, keys, "b1", "bravo")
    reader.tenants._next = 0.0  # the next look-up is due now (else within fairshare.REFRESH_S)
    got = reader.read(pending=False, count=10, block_ms=None)
    assert [decode(e.data).run_id for e in got] == ["b1"]  # type: ignore[union-attr]
    assert set(keys.lane_streams("seed", "planner", 0, "bravo")) <= set(reader.streams)


def test_a_backlog_of_one_tenant_does_not_delay_another_tenants_run(client: redis.Redis, keys: Keys) -> None:
    for i in range(200):
        _submit(client, keys, f"a{i}", "acme")
    reader = _reader(client, keys)
    first = reader.read(pending=False, count=8, block_ms=None)
    assert set(_tenants(keys, first)) == {"acme"} and len(first) == 8  # a lone busy tenant fills the read
    _submit(client, keys, "b1", "bravo")
    reader.tenants._next = 0.0
    second = reader.read(pending=False, count=8, block_ms=None)
    assert sorted(_tenants(keys, second)) == ["acme", "bravo"]  # the next read, ahead of 192 of acme's runs,
    # in a short model call: acme takes no more than bravo brought (then shares again)
    third = reader.read(pending=False, count=8, block_ms=None)
    assert _tenants(keys, third) == ["acme"] * 8


def test_two_busy_tenants_interleave_and_weights_split_the_slots(client: redis.Redis, keys: Keys) -> None:
    publish_limits(client, keys, {"acme": TenantLimits(weight=3), "bravo": TenantLimits(weight=1)})
    for i in range(100):
        _submit(client, keys, f"a{i}", "acme")
        _submit(client, keys, f"b{i}", "bravo")
    reader = _reader(client, keys)
    reads = [_tenants(keys, reader.read(pending=False, count=8, block_ms=None)) for _ in range(6)]
    assert "bravo" in reads[0] and "acme" in reads[0]
    for got in reads[1:]:  # once both are seen busy: 6 and 2 of every 8
        assert (got.count("acme"), got.count("bravo")) == (6, 2)
    assert reader.fair.weights == {"acme": 3, "bravo": 1}


def test_fair_shares_give_an_idle_tenant_the_smallest_busy_share() -> None:
    fair = FairRead(lambda s, c, b: [], Keys(), {"a": 3})
    assert fair.shares(["a", "b", "c"], 8, {"a", "b"}) == {"a": 6, "b": 2, "c": 2}
    assert fair.shares(["a", "b"], 8, set()) == {"a": 6, "b": 2}  # none active: all split by weight
    assert fair.shares(["a", "b"], 8, {"a"}) == {"a": 8, "b": 8}  # b may take a full read once


def test_a_lone_busy_tenant_fills_its_read_and_an_idle_one_costs_one_read_more(client: redis.Redis, keys: Keys) -> None:
    calls: list[int] = []
    inner = RoleStreams(client, keys, "seed", "planner", "w1")

    def counting(streams, count, block_ms):  # type: ignore[no-untyped-def]
        calls.append(count)
        return inner._read_new(streams, count, block_ms)

    for i in range(20):
        _submit(client, keys, f"a{i}", "acme")
    inner.ensure_groups()
    inner.add_tenants()
    fair = FairRead(counting, keys)
    fair.active["interactive"] = {"acme"}
    got = fair(inner.streams[0::2], 8, None)  # the interactive lane of runs of no tenant and of acme
    assert len(got) == 8 and calls == [8, 8]  # the idle streams (runs of no tenant) first, then acme's


def _stream_runs(client: redis.Redis, keys: Keys, tenant: str) -> list[str]:
    return [decode(f[b"msg"]).run_id for _, f in client.xrange(keys.stream("seed", "planner", 0, tenant=tenant))]  # type: ignore[union-attr]


def _end(client: redis.Redis, keys: Keys, run_id: str, tenants: dict[str, str] | None = None) -> None:
    client.hset(keys.run(run_id), "status", "done")
    runs_ended(client, keys, [run_id], tenants)


def test_max_running_queues_the_excess_and_each_end_starts_the_next(client: redis.Redis, keys: Keys) -> None:
    publish_limits(client, keys, {"acme": TenantLimits(max_running=2)})
    for i in range(5):
        _submit(client, keys, f"a{i}", "acme")
    assert _stream_runs(client, keys, "acme") == ["a0", "a1"]  # the other three wait, queued, not failed
    assert client.hget(keys.run("a4"), "status") == b"queued" and client.llen(keys.tenant_queue("acme")) == 3
    _end(client, keys, "a0", {"a0": "acme"})
    assert _stream_runs(client, keys, "acme") == ["a0", "a1", "a2"]
    cancel_run(client, keys, "a3")  # a queued run cancelled meanwhile never starts; its end starts the next
    _end(client, keys, "a1")  # (the tenant read from the record)
    assert _stream_runs(client, keys, "acme") == ["a0", "a1", "a2", "a4"]
    assert client.smembers(keys.tenant_running("acme")) == {b"a2", b"a4"}
    _end(client, keys, "a2")
    _end(client, keys, "a2")  # idempotent: a second report of one end starts nothing more
    assert client.smembers(keys.tenant_running("acme")) == {b"a4"}
    _submit(client, keys, "b1", "bravo")  # a tenant with no cap is not held
    assert _stream_runs(client, keys, "bravo") == ["b1"] and not client.exists(keys.tenant_running("bravo"))


def test_the_janitor_releases_ends_a_crash_hid_and_starts_runs_a_raised_cap_allows(client: redis.Redis,
                                                                                  keys: Keys) -> None:
    publish_limits(client, keys, {"acme": TenantLimits(max_running=1)})
    for i in range(4):
        _submit(client, keys, f"a{i}", "acme")
    client.hset(keys.run("a0"), "status", "done")  # ended, but the worker died before runs_ended
    assert sweep_caps(client, keys) == 1
    assert _stream_runs(client, keys, "acme") == ["a0", "a1"]
    publish_limits(client, keys, {"acme": TenantLimits(max_running=0)})  # the cap lifted: the queue drains
    assert sweep_caps(client, keys) == 2
    assert _stream_runs(client, keys, "acme") == ["a0", "a1", "a2", "a3"]


def test_a_partitions_share_of_max_running() -> None:
    assert [partition_cap(n, 4) for n in (0, 1, 4, 5, 8)] == [0, 1, 1, 2, 2]


def test_a_tenant_batch_cap_applies_only_while_several_tenants_are_busy(client: redis.Redis, keys: Keys) -> None:
    for i in range(50):
        _submit(client, keys, f"a{i}", "acme")
    reader = RoleStreams(client, keys, "seed", "planner", "w1", options=ReadOptions(tenant_count=4))
    reader.ensure_groups()
    assert _tenants(keys, reader.read(pending=False, count=16, block_ms=None)) == ["acme"] * 16  # alone: no cap
    for i in range(50):
        _submit(client, keys, f"b{i}", "bravo")
    reader.tenants._next = 0.0
    reader.read(pending=False, count=16, block_ms=None)  # bravo seen busy now
    got = _tenants(keys, reader.read(pending=False, count=16, block_ms=None))
    assert (got.count("acme"), got.count("bravo")) == (4, 4)
    assert reader.read_more([], 16) == []  # a lingering worker does not top a capped read up
