"""``BATON_WAIT_REPLICAS`` on a cluster: a commit batch spanning several primaries waits on each
primary's own connection; every primary's replica acknowledges, and one frozen replica shows."""

from __future__ import annotations

import os
import signal

import redis
from redis.crc import key_slot

from baton.broker import Keys, Outcome, RoleStreams, submit
from baton.broker.commit import commit_batch
from baton.broker.errors import Redis
from baton.broker.replication import ReplicaWait
from baton.protocol import Task, decode
from bench.localcluster import LocalCluster
from tests.broker.test_commit import _handoff
from tests.waiting import wait_for


def _batch(cclient: Redis, ckeys: Keys, name: str) -> list:
    tasks = [Task(run_id=f"{name}-{i}", role="planner", task="t") for i in range(24)]
    assert len({ckeys.partition(t.run_id) for t in tasks}) == ckeys.partitions
    nodes = {cclient.get_node_from_key(ckeys.run(t.run_id)).name for t in tasks}  # type: ignore[attr-defined]
    assert len(nodes) == 3
    for t in tasks:
        submit(cclient, ckeys, t)
    streams = RoleStreams(cclient, ckeys, "seed", "planner", "waiter")
    streams.ensure_groups()
    entries: list = []
    wait_for(lambda: entries.extend(streams.read(pending=False, count=50, block_ms=200)) or len(entries) == 24,
             what="all 24 entries read")
    streams.close(wait=True)  # no blocked read of this consumer outlives the test
    by_run = {t.run_id: t for t in tasks}
    return [_handoff(ckeys, e, by_run[decode(e.data).run_id]) for e in entries]


def test_a_batch_over_every_primary_is_acknowledged_by_their_replicas(cclient: Redis, ckeys: Keys) -> None:
    done = commit_batch(cclient, ckeys, "planner", "waiter", _batch(cclient, ckeys, "wait"),
                        wait=ReplicaWait(1, 5000))
    assert done.outcomes == [Outcome.COMMITTED] * 24
    assert done.replicas == 1


def test_one_frozen_replica_is_the_batch_s_count(cluster: LocalCluster, cclient: Redis, ckeys: Keys) -> None:
    handoffs = _batch(cclient, ckeys, "frozen")
    last = cluster.primary_of(key_slot(ckeys.run(handoffs[-1].run_id or "").encode()))
    with redis.Redis(port=last.port) as primary:
        replica_port = int(primary.info("replication")["slave0"]["port"])
    replica = next(n for n in cluster.running() if n.port == replica_port)
    assert replica.proc is not None
    os.kill(replica.proc.pid, signal.SIGSTOP)  # shorter than the cluster's node timeout: no failover
    try:
        done = commit_batch(cclient, ckeys, "planner", "waiter", handoffs, wait=ReplicaWait(1, 300))
    finally:
        os.kill(replica.proc.pid, signal.SIGCONT)
    assert done.outcomes == [Outcome.COMMITTED] * 24
    assert done.replicas == 0
    cluster.wait_ok()
