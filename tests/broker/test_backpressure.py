"""The backlog check (``broker.backpressure``) against real Redis 7 and 6.2 servers, and the OOM
refusal of a submit, which writes nothing."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, submit
from baton.broker.backpressure import (
    DEFAULT_RETRY_AFTER_S,
    MAX_RETRY_AFTER_S,
    BacklogFull,
    BacklogRead,
    RedisFull,
    _Gate,
    check_backlog,
    read_backlog,
)
from baton.broker.streams import ensure_group
from baton.protocol import Task
from tests.ops.conftest import redis62  # noqa: F401  (fixture)


@pytest.fixture(params=["redis7", "redis62"])
def any_client(request: pytest.FixtureRequest) -> Iterator[redis.Redis]:
    """A flushed client of Redis 7 (lag in XINFO) or Redis 6.2 (lag counted with XRANGE)."""
    url = request.getfixturevalue("redis_url" if request.param == "redis7" else "redis62")
    c = redis.Redis.from_url(url)
    c.flushall()
    yield c
    c.close()


def _submit(client: redis.Redis, keys: Keys, i: int, role: str = "planner") -> str:
    return submit(client, keys, Task(run_id=f"run-{i}", role=role, task=f"task {i}"))


def _deliver(client: redis.Redis, keys: Keys, count: int, role: str = "planner") -> int:
    """Deliver up to ``count`` entries of every stream of ``role`` to a consumer, as a worker reads."""
    for stream in keys.streams("seed", role):
        ensure_group(client, stream, keys.group(role))
    reply = client.xreadgroup(keys.group(role), "reader", dict.fromkeys(keys.streams("seed", role), ">"), count=count)
    return sum(len(items) for _, items in reply or [])


def test_the_backlog_is_the_lag_of_the_roles_group_over_all_its_streams(any_client: redis.Redis) -> None:
    keys = Keys(partitions=3)
    for i in range(9):
        _submit(any_client, keys, i)
    _submit(any_client, keys, 99, role="researcher")
    assert len({keys.run_stream("seed", "planner", f"run-{i}") for i in range(9)}) > 1  # spread over streams
    before = read_backlog(any_client, keys, "seed", "planner")
    assert before.backlog == 9
    delivered = _deliver(any_client, keys, 2)
    after = read_backlog(any_client, keys, "seed", "planner")
    assert after.backlog == 9 - delivered
    if before.delivered is not None:  # Redis 7 counts deliveries; 6.2 does not
        assert after.delivered == before.delivered + delivered
    assert read_backlog(any_client, keys, "seed", "summarizer").backlog == 0  # no stream yet


def test_the_check_refuses_at_the_limit_and_admits_again_once_work_is_delivered(any_client: redis.Redis) -> None:
    keys = Keys()
    for i in range(3):
        check_backlog(any_client, keys, "seed", "planner", 3)
        _submit(any_client, keys, i)
    with pytest.raises(BacklogFull) as refused:
        check_backlog(any_client, keys, "seed", "planner", 3)
    assert (refused.value.role, refused.value.backlog, refused.value.limit) == ("planner", 3, 3)
    assert refused.value.retry_after_s == DEFAULT_RETRY_AFTER_S  # nothing drained yet: no rate to go by
    assert "retry in 5 s" in str(refused.value)
    check_backlog(any_client, keys, "seed", "planner", 0)  # 0: no limit
    assert _deliver(any_client, keys, 1) == 1
    check_backlog(any_client, keys, "seed", "planner", 3)  # a refusal-worthy estimate is read again


def test_a_process_counts_its_own_admits_between_reads(client: redis.Redis, keys: Keys) -> None:
    check_backlog(client, keys, "seed", "planner", 2)  # reads 0, admits one
    check_backlog(client, keys, "seed", "planner", 2)  # estimate 1: admitted without a read
    _submit(client, keys, 1)
    _submit(client, keys, 2)
    with pytest.raises(BacklogFull):  # estimate 2: read again, and Redis agrees
        check_backlog(client, keys, "seed", "planner", 2)


def test_retry_after_follows_the_drain_rate() -> None:
    gate = _Gate()
    gate.record(BacklogRead(at=100.0, backlog=10, delivered=0))
    assert gate.retry_after(5) == DEFAULT_RETRY_AFTER_S  # one read: no rate
    gate.record(BacklogRead(at=110.0, backlog=10, delivered=20))  # 2 tasks/s drained
    assert gate.retry_after(5) == 3  # 6 tasks to go below 5, at 2 per second
    gate.record(BacklogRead(at=111.0, backlog=10_000, delivered=21))
    assert gate.retry_after(5) == MAX_RETRY_AFTER_S
    gate.record(BacklogRead(at=112.0, backlog=10, delivered=None))  # Redis 6.2
    assert gate.retry_after(5) == DEFAULT_RETRY_AFTER_S


def test_a_submit_to_a_full_redis_is_refused_whole(tmp_path: Path) -> None:
    keys = Keys()
    with EmbeddedRedis(tmp_path / "full", extra_args=["--maxmemory", "2mb"]) as server:
        c = redis.Redis.from_url(server.url)
        _submit(c, keys, 0)
        for i in range(10_000):
            try:
                c.set(f"filler:{i}", b"x" * 4096)
            except redis.exceptions.OutOfMemoryError:
                break
        size = c.dbsize()
        with pytest.raises(RedisFull) as refused:
            _submit(c, keys, 1)
        assert isinstance(refused.value, redis.exceptions.OutOfMemoryError)  # still an outage to ride out
        assert "out of memory" in str(refused.value) and refused.value.retry_after_s == DEFAULT_RETRY_AFTER_S
        assert c.dbsize() == size and not c.exists(keys.run("run-1")) and c.xlen(keys.stream("seed", "planner")) == 1
        c.close()
