"""The janitor: trimming that never drops pending entries, TTLs, index clean-up, and a sweep that
survives a Redis that went away."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, Retention, RoleStreams, ensure_group, get_run, submit
from baton.broker.janitor import Janitor, SweepReport, trim_floor, trim_stream
from baton.protocol import Task
from tests.cli import baton
from tests.conftest import Workers
from tests.waiting import wait_for


def test_maybe_sweep_survives_a_stopped_server_and_sweeps_again_once_it_is_back(
    tmp_path: Path, keys: Keys, caplog: pytest.LogCaptureFixture
) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    client = redis.Redis.from_url(server.url, socket_timeout=2, socket_connect_timeout=2)
    try:
        janitor = Janitor(client, keys, ["planner"], interval_s=0.05)
        ensure_group(client, keys.stream("seed", "planner"), "planner")
        server.stop()
        with caplog.at_level(logging.WARNING, logger="baton.janitor"):
            wait_for(lambda: janitor.maybe_sweep() is None and "janitor sweep failed" in caplog.text,
                     timeout=30, what="a sweep against the stopped server")
        assert "ConnectionError" in caplog.text
        server.start()
        report = wait_for(janitor.maybe_sweep, timeout=30, what="a sweep once the server is back")
        assert isinstance(report, SweepReport)
    finally:
        client.close()
        server.stop()


def test_trimming_keeps_pending_and_unread_entries(client: redis.Redis, keys: Keys) -> None:
    stream = keys.stream("seed", "planner")
    ensure_group(client, stream, "planner")
    ids = [client.xadd(stream, {"msg": f"m{i}".encode()}).decode() for i in range(8)]
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    got = reader.read(pending=False, count=6, block_ms=100)  # m0..m5 delivered, m6 m7 unread
    assert [e.id for e in got] == ids[:6]
    client.xack(stream, "planner", ids[0], ids[1], ids[3], ids[5])  # m2 and m4 stay pending
    assert trim_floor(client, stream) == ids[2]
    assert trim_stream(client, stream) == 2  # only m0 and m1: below the oldest pending entry
    left = [i.decode() for i, _ in client.xrange(stream)]
    assert left == ids[2:]
    mine = reader.read(pending=True, count=10, block_ms=None)
    assert [(e.id, e.data) for e in mine] == [(ids[2], b"m2"), (ids[4], b"m4")]
    # a second group that has read nothing holds the floor at the start
    ensure_group(client, stream, "audit")
    assert trim_stream(client, stream) == 0
    assert trim_floor(client, keys.stream("seed", "nobody")) is None


def test_workers_trim_their_stream_periodically_and_records_expire(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    env = {"BATON_MODEL": "echo", "BATON_JANITOR_INTERVAL_S": "0.3", "BATON_RECORD_TTL_S": "3600"}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env=env)
    kept = Keys(keys.prefix, keys.partitions, Retention(record_ttl_s=3600))
    run_ids = [submit(client, kept, Task(run_id=f"ttl-{i}", role="planner", task="t")) for i in range(3)]
    wait_for(lambda: all((get_run(client, keys, r) or {}).get("status") == "done" for r in run_ids),
               what="the runs", logs=workers.logs)
    wait_for(lambda: all(client.xlen(keys.stream("seed", r)) == 0 for r in ("planner", "researcher", "summarizer")),
               what="the workers' janitors to trim acknowledged history", logs=workers.logs)
    for run_id in run_ids:
        for key in (keys.run(run_id), keys.pad(run_id, "Alice"), keys.pad(run_id, "Eve"), keys.pads(run_id)):
            assert 0 < client.ttl(key) <= 3600, key
    assert client.xlen(keys.results()) == 3  # results are kept for results_retention_s


def test_janitor_command_and_index_clean_up(client: redis.Redis, keys: Keys, worker_env: dict[str, str]) -> None:
    submit(client, keys, Task(run_id="old", role="planner", task="t"))
    client.zadd(keys.runs(), {"expired-run": 1.0})
    client.sadd(keys.cancelled(), "expired-run")
    client.xadd(keys.results(), {"msg": b"ancient"}, id="1000-0")
    reader = RoleStreams(client, keys, "seed", "planner", "c")
    (entry,) = reader.read(pending=False, count=1, block_ms=100)
    client.xack(keys.stream("seed", "planner"), "planner", entry.id)
    proc = baton("janitor", "--json", env={**worker_env, "BATON_RECORD_TTL_S": "60"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report == {"trimmed": {keys.stream("seed", "planner"): 1}, "results_trimmed": 1, "runs_forgotten": 1,
                      "cancelled_forgotten": 1, "reviews_expired": 0, "threads_released": 0,
                      "tenant_runs_started": 0}
    assert client.zscore(keys.runs(), "old") is not None  # the fresh run stays indexed
    unread = client.xadd(keys.stream("seed", "planner"), {"msg": b"x"})
    assert Janitor(client, keys).sweep().trimmed == {}  # not yet delivered: kept
    assert client.xrange(keys.stream("seed", "planner"))[0][0] == unread
