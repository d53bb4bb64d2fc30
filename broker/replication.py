"""``WAIT N timeout`` after a commit: how many replicas hold the writes before the hop moves on.

Redis replicates asynchronously: a write the primary acknowledged can vanish if the primary dies
before a replica received it. ``WAIT`` blocks the connection that wrote until ``n`` replicas have
acknowledged everything it wrote so far, or until ``timeout_ms`` passes, and returns the count.
It must run on the connection that wrote (a fresh connection has written nothing and returns at
once), which is why ``commit`` sends it in the same pipeline as the commit scripts. On a Redis
Cluster a batch spans several primaries: ``commit`` runs one pipeline per primary on that node's
own connection, each ending with ``WAIT``, and the batch's count is the smallest.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import redis
from redis.cluster import RedisCluster

from baton.broker.cluster import is_cluster

__all__ = ["ReplicaWait", "wait_replicas"]


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
