"""Which Redis failures are outages, from errors a real redis-server produces."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton.agents.runtime.failures import classify, describe
from baton.broker import EmbeddedRedis, Handoff, Heartbeat, Keys, RoleStreams, commit, free_port, submit
from baton.broker.errors import describe as describe_redis
from baton.broker.errors import is_transient
from baton.broker.records import encode_heartbeat
from baton.protocol import Task


@pytest.fixture
def full_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server with 2 MiB of memory and noeviction, filled until it refuses writes."""
    with EmbeddedRedis(tmp_path / "full", extra_args=["--maxmemory", "2mb"]) as server:
        client = redis.Redis.from_url(server.url)
        yield client
        client.close()


def _fill(client: redis.Redis) -> redis.RedisError:
    for i in range(10_000):
        try:
            client.set(f"filler:{i}", b"x" * 4096)
        except redis.RedisError as exc:
            return exc
    raise AssertionError("Redis never refused a write")


def test_out_of_memory_is_transient(full_redis: redis.Redis) -> None:
    exc = _fill(full_redis)
    assert is_transient(exc) and classify(exc) == "transient"
    assert describe(exc) == "Redis is out of memory (OOM)"


def test_a_commit_refused_for_memory_is_transient(full_redis: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="oom-run", role="planner", task="t")
    submit(full_redis, keys, task)
    streams = RoleStreams(full_redis, keys, "seed", "planner", "c1")
    streams.ensure_groups()
    (entry,) = streams.read(pending=False, count=1, block_ms=100)
    _fill(full_redis)
    # Filled to the brim, the server is just under its limit again once the refused write's buffer is
    # freed; a limit below what it holds keeps it over (as when the data outgrows maxmemory).
    full_redis.config_set("maxmemory", "1mb")
    handoff = Handoff(entry=entry, run_id=task.run_id, msg_id=task.id, pad=("Alice", entry.id, b"{}"),
                      record={"status": "running"})
    with pytest.raises(redis.RedisError) as caught:
        commit(full_redis, keys, "planner", "c1", [handoff])
    assert classify(caught.value) == "transient", repr(caught.value)
    full_redis.config_set("maxmemory", 0)  # the outage ends: the same commit goes through
    assert commit(full_redis, keys, "planner", "c1", [handoff])[0].name == "COMMITTED"


def test_writing_to_a_replica_is_transient(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "primary") as primary, \
            EmbeddedRedis(tmp_path / "replica", extra_args=["--replicaof", "127.0.0.1", str(primary.port)]) as replica:
        client = redis.Redis.from_url(replica.url)
        try:
            with pytest.raises(redis.RedisError) as caught:
                client.set("k", "v")
        finally:
            client.close()
    assert is_transient(caught.value) and classify(caught.value) == "transient"
    assert "READONLY" in describe(caught.value)


def test_nothing_listening_and_a_timeout_are_transient(redis_url: str) -> None:
    down = redis.Redis(port=free_port(), socket_connect_timeout=1)
    with pytest.raises(redis.ConnectionError) as refused:
        down.ping()
    assert classify(refused.value) == "transient" and describe(refused.value).startswith("Redis connection failed")
    slow = redis.Redis.from_url(redis_url, socket_timeout=0.2)
    with pytest.raises(redis.TimeoutError) as timed_out:
        slow.blpop(["nothing-here"], timeout=5)
    slow.close()
    assert classify(timed_out.value) == "transient"


def test_wrong_credentials_and_wrong_types_are_not_outages(client: redis.Redis, redis_url: str) -> None:
    client.set("s", "v")
    with pytest.raises(redis.ResponseError) as wrongtype:
        client.xadd("s", {"a": "b"})
    assert not is_transient(wrongtype.value) and classify(wrongtype.value) == "poison"
    client.acl_setuser("limited", enabled=True, passwords=["+pw"], commands=["+ping"], keys=["*"])
    try:
        limited = redis.Redis.from_url(redis_url.replace("redis://", "redis://limited:pw@"))
        with pytest.raises(redis.ResponseError) as noperm:
            limited.set("k", "v")
        limited.close()
        bad = redis.Redis.from_url(redis_url.replace("redis://", "redis://limited:wrong@"))
        with pytest.raises(redis.AuthenticationError) as auth:
            bad.ping()
        bad.close()
    finally:
        client.acl_deluser("limited")
    assert not is_transient(noperm.value) and not is_transient(auth.value)


@pytest.mark.parametrize("text", [
    "LOADING Redis is loading the dataset in memory",
    "MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'.",
    "CLUSTERDOWN The cluster is down",
    "TRYAGAIN Multiple keys request during rehashing of slot",
    "BUSY Redis is busy running a script.",
    "NOREPLICAS Not enough good replicas to write.",
    "READONLY You can't write against a read only replica.",
    "OOM command not allowed when used memory > 'maxmemory'.",
    "ERR Error running script (call to f_1): @user_script:3: -OOM command not allowed when used memory",
])
def test_transient_codes_by_message(text: str) -> None:
    exc = redis.ResponseError(text)
    assert is_transient(exc) and classify(exc) == "transient"
    assert text.split()[0] in describe_redis(exc) or "OOM" in describe_redis(exc)


@pytest.mark.parametrize("text", ["ERR unknown command 'FOO'", "NOSCRIPT No matching script", "BUSYGROUP exists",
                                  "ERR the word OOM inside a message"])
def test_other_replies_are_not_outages(text: str) -> None:
    assert not is_transient(redis.ResponseError(text))


def test_a_heartbeat_stays_alive_while_redis_is_full(full_redis: redis.Redis, keys: Keys) -> None:
    streams = RoleStreams(full_redis, keys, "seed", "planner", "c1")
    first = Heartbeat(consumer="c1", role="planner", host="h", pid=1, at=1.0)
    streams.beat(first, ttl_s=5)
    full_redis.config_set("maxmemory", 1)  # every write that may grow memory is refused now
    with pytest.raises(redis.exceptions.OutOfMemoryError):
        full_redis.set(keys.heartbeat("c1"), b"new payload")  # a plain write is refused...
    full_redis.pexpire(keys.heartbeat("c1"), 100)
    streams.beat(Heartbeat(consumer="c1", role="planner", host="h", pid=1, at=2.0), ttl_s=30)  # ...but the
    # beat renews the TTL all the same
    assert full_redis.pttl(keys.heartbeat("c1")) > 25_000
    assert full_redis.get(keys.heartbeat("c1")) == encode_heartbeat(first)


def test_a_slot_without_a_primary_is_an_outage_but_a_cross_slot_command_is_not() -> None:
    from redis.exceptions import RedisClusterException, SlotNotCoveredError

    from baton.broker.errors import UNREACHABLE

    unserved = SlotNotCoveredError('Slot "42" is not covered by the cluster.')
    assert is_transient(unserved) and isinstance(unserved, UNREACHABLE)
    assert "no primary" in describe_redis(unserved)
    crossed = RedisClusterException("MGET - all keys must map to the same key slot")
    assert not is_transient(crossed) and not isinstance(crossed, UNREACHABLE)
