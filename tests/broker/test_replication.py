"""``WAIT`` after a commit against a lone real server: no replica, so the count is 0 after the timeout."""

from __future__ import annotations

import redis

from baton.broker import Keys, Outcome, submit
from baton.broker.commit import commit_batch
from baton.broker.replication import ReplicaWait, wait_replicas
from baton.protocol import Task
from tests.broker.test_commit import _handoff, _read_one


def test_commit_batch_waits_and_reports_no_replica(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="waited", role="planner", task="t")
    submit(client, keys, task)
    _streams, entry = _read_one(client, keys, "c1")
    done = commit_batch(client, keys, "planner", "c1", [_handoff(keys, entry, task)], wait=ReplicaWait(1, 20))
    assert done.outcomes == [Outcome.COMMITTED]
    assert done.replicas == 0
    assert client.xlen(keys.stream("seed", "researcher")) == 1


def test_commit_batch_without_wait_reports_nothing(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id="unwaited", role="planner", task="t")
    submit(client, keys, task)
    _streams, entry = _read_one(client, keys, "c1")
    done = commit_batch(client, keys, "planner", "c1", [_handoff(keys, entry, task)], wait=ReplicaWait(0, 20))
    assert done.outcomes == [Outcome.COMMITTED] and done.replicas is None


def test_wait_replicas_on_a_plain_client(client: redis.Redis) -> None:
    client.set("k", "v")
    assert wait_replicas(client, "k", 1, 10) == 0
