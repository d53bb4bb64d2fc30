"""Reserved interactive capacity on a real Redis: what a ``--reserve interactive`` reader reads."""

from __future__ import annotations

import pytest
import redis

from baton.broker import Keys, ReadOptions, RoleStreams, submit
from baton.broker.reserve import PROBE, ReservedRead
from baton.protocol import Task, decode


def _submit(client: redis.Redis, keys: Keys, run_id: str, tenant: str = "", priority: str = "interactive") -> None:
    submit(client, keys, Task(run_id=run_id, role="planner", task="t", tenant=tenant,
                              priority=priority))  # type: ignore[arg-type]


def _reserved(client: redis.Redis, keys: Keys, name: str = "r1") -> tuple[RoleStreams, list[float]]:
    """A reserved reader whose clock the test moves (``now[0]``)."""
    streams = RoleStreams(client, keys, "seed", "planner", name, options=ReadOptions(reserved=True))
    streams.ensure_groups()
    now = [100.0]
    assert streams.reserved is not None
    streams.reserved.clock = lambda: now[0]
    return streams, now


def _runs(entries: list) -> list[str]:  # type: ignore[type-arg]
    return [decode(e.data).run_id for e in entries]  # type: ignore[union-attr]


def test_a_reserved_reader_never_reads_the_batch_lane(client: redis.Redis, keys: Keys) -> None:
    for i in range(5):
        _submit(client, keys, f"b{i}", priority="batch")
    reader, _ = _reserved(client, keys)
    assert reader.read(pending=False, count=32, block_ms=None) == []
    _submit(client, keys, "i1")
    assert _runs(reader.read(pending=False, count=32, block_ms=None)) == ["i1"]
    assert client.xlen(keys.stream("seed", "planner", 0, "batch")) == 5
    group, = client.xinfo_groups(keys.stream("seed", "planner", 0, "batch"))
    assert group["lag"] == 5 and group["pending"] == 0  # left unread for the shared workers


def test_a_flooding_tenant_is_left_to_the_shared_workers_and_looked_at_again_later(
        client: redis.Redis, keys: Keys) -> None:
    for i in range(50):
        _submit(client, keys, f"a{i}", "acme")
    reader, now = _reserved(client, keys)
    reader.tenants._next = 0.0
    first = reader.read(pending=False, count=32, block_ms=None)
    assert _runs(first) == [f"a{i}" for i in range(PROBE)]  # a probe, not a batch of 32
    assert reader.read(pending=False, count=32, block_ms=None) == []  # acme floods: 46 wait, none read
    _submit(client, keys, "g1", "globex")
    _submit(client, keys, "n1")  # a run of no tenant
    reader.tenants._next = 0.0
    assert sorted(_runs(reader.read(pending=False, count=32, block_ms=None))) == ["g1", "n1"]
    now[0] += reader.reserved.busy_s  # type: ignore[union-attr]
    again = reader.read(pending=False, count=32, block_ms=None)
    assert _runs(again) == [f"a{i}" for i in range(PROBE, 2 * PROBE)]  # looked at again, a probe again


def test_a_tenant_with_fewer_runs_than_a_probe_is_served_on_every_read(client: redis.Redis, keys: Keys) -> None:
    reader, _ = _reserved(client, keys)
    for round_ in range(3):
        for i in range(PROBE - 1):
            _submit(client, keys, f"g{round_}{i}", "globex")
        reader.tenants._next = 0.0
        assert len(reader.read(pending=False, count=32, block_ms=None)) == PROBE - 1
    assert reader.reserved is not None and reader.reserved.flooding == {}


def test_a_reserved_reader_does_not_top_up_and_reclaims_interactive_work_only(client: redis.Redis, keys: Keys) -> None:
    shared = RoleStreams(client, keys, "seed", "planner", "dead")
    shared.ensure_groups()
    _submit(client, keys, "b1", priority="batch")
    _submit(client, keys, "i1")
    assert len(shared.read(pending=False, count=10, block_ms=None)) == 2  # a shared worker that then died
    _submit(client, keys, "i2")
    reader, _ = _reserved(client, keys)
    assert reader.read_more([], count=10) == []
    assert reader.reclaim(lease_ms=60_000) == 1  # the dead one's interactive entry, not its batch one
    assert _runs(reader.read(pending=True, count=10, block_ms=None)) == ["i1"]
    assert all(keys.parse_stream(s).lane == "interactive" for s in reader.reclaimable())  # type: ignore[union-attr]


def test_a_probe_is_at_least_one() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        ReservedRead(lambda streams, count, block: [], Keys(), probe=0)
