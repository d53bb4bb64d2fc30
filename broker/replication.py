"""``WAIT N timeout`` after a commit: how many replicas hold the writes before the hop moves on.

Redis replicates asynchronously: a write the primary acknowledged can vanish if the primary dies
before a replica received it. ``WAIT`` blocks the connection that wrote until ``n`` replicas have
acknowledged everything it wrote so far, or until ``timeout_ms`` passes, and returns the count.
It must run on the connection that wrote (a fresh connection has written nothing and returns at
once), which is why ``commit`` sends it in the same pipeline as the commit scripts. On a Redis
Cluster a batch spans several primaries: ``commit`` runs one pipeline per primary on that node's
own connection, each ending with ``WAIT``, and the batch's count is the smallest.

A submit confirms its run the same way (:func:`confirm_run`): one pipeline on the node that owns
the run's record checks that the record is there, writes a short-lived probe key in the same slot
and ends with ``WAIT``. The primary's replication stream is ordered, so replicas that acknowledged
the probe hold the record too, whichever connection wrote it.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster
from redis.exceptions import RedisClusterException

from .cluster import is_cluster
from .drive import Op, run

__all__ = ["ReplicaWait", "ReplicasBehind", "confirm_op", "confirm_run", "wait_replicas"]

PROBE_TTL_MS = 60_000
"""How long a submit's replication probe key lives."""


class ReplicasBehind(redis.RedisError):
    """A run is written on the primary but fewer replicas than asked acknowledged it in time.

    The run is not lost yet, but a failover now could lose it: submitting again with the same
    idempotency key confirms it (nothing is written twice).
    """

    def __init__(self, run_id: str, acked: int, wait: ReplicaWait) -> None:
        super().__init__(f"run {run_id} is on {acked} of {wait.replicas} replicas after {wait.timeout_ms} ms "
                         "(BATON_WAIT_REPLICAS); submit again with the same idempotency key to confirm it")
        self.run_id = run_id
        self.acked = acked
        self.replicas = wait.replicas


@dataclass(frozen=True, slots=True)
class ReplicaWait:
    """``WAIT replicas timeout_ms`` after each commit batch; ``replicas=0`` turns it off."""

    replicas: int = 0
    timeout_ms: int = 100

    @property
    def on(self) -> bool:
        """Whether commits wait for replicas."""
        return self.replicas > 0


def wait_replicas(client: redis.Redis | RedisCluster, key: str | bytes, n: int, timeout_ms: int) -> int:
    """``WAIT n timeout_ms`` on the node that owns ``key``; return how many replicas acknowledged.

    For a plain or Sentinel client this is the client itself: call it on a connection that did
    the writes (a pipeline), see the module docstring.
    """
    if is_cluster(client):
        assert isinstance(client, RedisCluster)
        cluster: Any = client
        node = cluster.get_node_from_key(key)
        target = node.redis_connection if node is not None else None
        if target is None:
            raise redis.ConnectionError(f"no cluster node owns the slot of {key!r}")
        return int(target.wait(n, timeout_ms))
    assert isinstance(client, redis.Redis)
    return int(client.wait(n, timeout_ms))


def confirm_run(client: redis.Redis | RedisCluster, record_key: str, probe_key: str, run_id: str,
                wait: ReplicaWait | None) -> int | None:
    """Whether the run record ``record_key`` exists (``None``: it does not), and with ``wait`` on,
    how many replicas hold it: ``SET probe_key``, then ``WAIT``, on one connection of the node that
    owns the record (``probe_key`` must hash to the same slot). Without ``wait`` the count is 0.
    """
    if wait is None or not wait.on or not is_cluster(client):
        return run(confirm_op(record_key, probe_key, run_id, wait), client)
    cluster: Any = client
    node = cluster.get_node_from_key(record_key)
    if node is None or node.redis_connection is None:
        raise redis.ConnectionError(f"no cluster node owns the slot of {record_key!r}")
    try:
        return run(_probe(record_key, probe_key, run_id, wait), node.redis_connection)
    except (redis.exceptions.MovedError, redis.ConnectionError, redis.TimeoutError) as exc:
        with contextlib.suppress(redis.RedisError, RedisClusterException):  # moved or died: learn the map again
            cluster.nodes_manager.initialize()
        if isinstance(exc, redis.exceptions.MovedError):
            raise redis.exceptions.TryAgainError("TRYAGAIN the run's slot moved while confirming it") from None
        raise


def confirm_op(record_key: str, probe_key: str, run_id: str, wait: ReplicaWait | None) -> Op[int | None]:
    """``confirm_run`` as an op (``broker.drive``); on Redis Cluster with ``wait`` on, only the
    synchronous client routes the probe to the record's node (``confirm_run``)."""
    if wait is None or not wait.on:  # a cluster client routes it, following a failover itself
        return 0 if (yield lambda c: c.exists(record_key)) else None
    if (yield is_cluster):
        confirmed: int | None = yield lambda c: confirm_run(c, record_key, probe_key, run_id, wait)
        return confirmed
    return (yield from _probe(record_key, probe_key, run_id, wait))


def _probe(record_key: str, probe_key: str, run_id: str, wait: ReplicaWait) -> Op[int | None]:
    pipe = yield lambda c: c.pipeline(transaction=False)
    pipe.exists(record_key)
    pipe.set(probe_key, run_id, px=PROBE_TTL_MS)
    pipe.wait(wait.replicas, wait.timeout_ms)
    exists, _, acked = yield lambda _: pipe.execute()
    return int(acked) if exists else None
