"""Consumer names, liveness from heartbeats, cancellation and the shared read loop, on a real Redis."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from baton.broker import (
    CommandRefused,
    ConsumerLoop,
    Entry,
    GroupStreams,
    Heartbeat,
    Keys,
    RoleStreams,
    cancel_run,
    cancelled,
    check_worker,
    consumer_name,
    get_run,
    is_noperm,
    live_workers,
    parse_consumer,
    submit,
)
from baton.protocol import Task


@pytest.mark.parametrize(("role", "host"), [("planner", "box"), ("code-review", "ip-10-0-0-1"), ("a", "b.c-d")])
def test_consumer_names_round_trip_even_with_hyphens(role: str, host: str) -> None:
    name = consumer_name(role, host=host, pid=4242)
    assert name.startswith(f"{role}-")  # the ACL grants a role the heartbeat keys hb:<role>-*
    parsed = parse_consumer(name)
    assert parsed is not None and (parsed.role, parsed.host, parsed.pid) == (role, host, 4242)
    assert consumer_name(role, host=host, pid=4242) != name  # a random suffix per process start


@pytest.mark.parametrize("name", ["", "planner", "planner-host-notapid-abc", "-host-1-abc"])
def test_foreign_consumer_names_do_not_parse(name: str) -> None:
    assert parse_consumer(name) is None


def _beat(client: redis.Redis, keys: Keys, role: str, host: str, at: float) -> str:
    name = consumer_name(role, host=host, pid=7)
    beat = Heartbeat(consumer=name, role=role, host=host, pid=7, at=at)
    RoleStreams(client, keys, "seed", role, name).beat(beat, ttl_s=30)
    return name


def test_check_worker_wants_the_role_the_host_and_a_fresh_beat(client: redis.Redis, keys: Keys) -> None:
    now = time.time()
    assert check_worker(client, keys, "planner", "box", ttl_s=2, now=now) is None
    _beat(client, keys, "planner", "other-box", now)  # another host
    _beat(client, keys, "planner-x", "box", now)  # a role whose name starts like ours
    _beat(client, keys, "planner", "box", now - 10)  # stale payload
    assert check_worker(client, keys, "planner", "box", ttl_s=2, now=now) is None
    fresh = _beat(client, keys, "planner", "box", now)
    assert check_worker(client, keys, "planner", "box", ttl_s=2, now=now) == fresh
    assert check_worker(client, keys, "planner-x", "box", ttl_s=2, now=now) is not None


def test_live_workers_lists_heartbeat_payloads_and_skips_garbage(client: redis.Redis, keys: Keys) -> None:
    assert live_workers(client, keys) == []
    a = _beat(client, keys, "planner", "box", 1.0)
    client.set(keys.heartbeat("junk"), b"{not json")
    assert [w.consumer for w in live_workers(client, keys)] == [a]
    RoleStreams(client, keys, "seed", "planner", a).forget()
    assert live_workers(client, keys) == []


def test_cancel_run_marks_the_record_and_the_flag(client: redis.Redis, keys: Keys) -> None:
    submit(client, keys, Task(run_id="r1", role="planner", task="t"))
    submit(client, keys, Task(run_id="r2", role="planner", task="t"))
    assert cancel_run(client, keys, "nope") is None
    assert cancelled(client, keys, ["r1", "r2"]) == [False, False]
    assert cancel_run(client, keys, "r1") == "queued"
    assert cancelled(client, keys, ["r1", "r2"]) == [True, False]
    assert (get_run(client, keys, "r1") or {})["status"] == "cancelled"
    assert cancel_run(client, keys, "r1") == "cancelled"  # already finished: nothing changes
    assert cancelled(client, keys, []) == []


def test_the_loop_serves_any_group_and_survives_a_deleted_group(client: redis.Redis, keys: Keys) -> None:
    streams = GroupStreams(client, keys, ["s:a", "s:b"], "g", "me")
    stopping = threading.Event()
    seen: list[Entry] = []

    def handle(entries: list[Entry]) -> bool:
        seen.extend(entries)
        for e in entries:
            client.xack(e.stream, "g", e.id)
        if len(seen) == 1:
            client.xgroup_destroy("s:a", "g")  # the next read meets NOGROUP
            client.xadd("s:a", {"msg": b"two"})
        if len(seen) >= 2:
            stopping.set()
        return False

    streams.ensure_groups()
    client.xadd("s:b", {"msg": b"one"})
    loop = ConsumerLoop(streams, stopping, count=4, block_ms=50, lease_ms=1000, reclaim_interval_s=0.05,
                        retry_backoff_s=0.01)
    runner = threading.Thread(target=loop.run, args=(handle,), daemon=True)
    runner.start()
    runner.join(timeout=30)
    assert not runner.is_alive()
    assert [e.data for e in seen] == [b"one", b"two"]
    assert {g["name"] for g in client.xinfo_groups("s:a")} == {b"g"}


def test_noperm_is_told_apart_from_other_refusals() -> None:
    assert is_noperm(CommandRefused("NOPERM User x has no permissions to run the 'flushall' command"))
    assert not is_noperm(CommandRefused("NOGROUP No such key"))
