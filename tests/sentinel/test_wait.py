"""``BATON_WAIT_REPLICAS``: one replica acknowledges in a Sentinel group; a lone server has none,
so the worker's commit returns after the timeout, logs a warning and counts it."""

from __future__ import annotations

import asyncio
import urllib.request

import redis

from baton.broker import Keys, Outcome, connect, connect_async, free_port, submit
from baton.broker.commit import commit_batch
from baton.broker.replication import ReplicaWait
from baton.protocol import Task
from tests.broker.test_commit import _handoff, _read_one
from tests.conftest import Workers
from tests.sentinel.conftest import SentinelGroup
from tests.waiting import wait_for


def test_one_replica_acknowledges_a_commit(sentinel_group: SentinelGroup, keys: Keys) -> None:
    client = connect(sentinel_group.url)
    try:
        task = Task(run_id="replicated", role="planner", task="t")
        submit(client, keys, task)
        _streams, entry = _read_one(client, keys, "c1")
        done = commit_batch(client, keys, "planner", "c1", [_handoff(keys, entry, task)], wait=ReplicaWait(1, 5000))
        assert done.outcomes == [Outcome.COMMITTED] and done.replicas == 1
        assert sentinel_group.replica is not None
        with redis.Redis(port=sentinel_group.replica.port) as replica:
            assert replica.xlen(keys.stream("seed", "researcher")) == 1
    finally:
        client.close()
    assert asyncio.run(_async_read(sentinel_group.url, keys.stream("seed", "researcher"))) == 1


async def _async_read(url: str, stream: str) -> int:
    aclient = connect_async(url)
    try:
        return int(await aclient.xlen(stream))
    finally:
        await aclient.aclose()


def _short_waits(port: int) -> float:
    try:
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return 0.0
    for line in text.splitlines():
        if line.startswith('baton_replica_wait_short_total{role="planner"}'):
            return float(line.split()[-1])
    return 0.0


def test_a_lone_server_has_no_replica_the_hop_goes_on_and_the_shortfall_is_counted(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    port = free_port()
    workers.spawn("planner", env={"BATON_MODEL": "echo", "BATON_WAIT_REPLICAS": "1", "BATON_WAIT_TIMEOUT_MS": "50",
                                  "BATON_METRICS_PORT": str(port)})
    workers.wait_ready(client, 1, timeout=120)
    submit(client, keys, Task(run_id="lonely", role="planner", task="t"))
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the planner's handoff",
             logs=workers.logs)
    assert wait_for(lambda: _short_waits(port), what="the short wait to be counted", logs=workers.logs) >= 1
    assert workers.logged("only 0 of 1 replicas acknowledged a commit within 50 ms"), workers.logs()
