"""The chaos run's Redis when ``--cluster``: a local 3 + 3 Redis Cluster whose primary dies mid-run.

:class:`ClusterTarget` stands where the chaos loop keeps its ``EmbeddedRedis``: ``url``,
``restart()`` (here: SIGKILL the primary that serves partition 0; its replica is promoted after
``cluster-node-timeout``) and ``stop()``. From the kill, a probe thread writes to the killed
partition's slot until a write succeeds: ``recovered_s`` is how long that slot took writes
nowhere, as a client (with the broker's retries) saw it.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from redis.crc import key_slot

from baton.broker import Keys, connect
from bench.localcluster import LocalCluster

__all__ = ["ClusterTarget"]

log = logging.getLogger("baton.chaos")


class ClusterTarget:
    """A local cluster (``primaries`` + as many replicas) for the chaos run."""

    def __init__(self, data_dir: Path, keys: Keys, *, primaries: int = 3, node_timeout_ms: int = 2000) -> None:
        self.cluster = LocalCluster(data_dir, primaries=primaries, replicas=1, node_timeout_ms=node_timeout_ms)
        self.keys = keys
        self.killed_port: int | None = None
        self.recovered_s: float | None = None
        self._probe: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The cluster's ``redis+cluster://`` URL."""
        return self.cluster.url

    def start(self) -> ClusterTarget:
        """Start the cluster and wait until it is ok."""
        self.cluster.start()
        return self

    def primaries(self) -> set[int]:
        """Ports of the primaries serving the partitions."""
        return {self.cluster.primary_of(key_slot(self.keys.tag(p).encode())).port for p in range(self.keys.partitions)}

    def restart(self) -> None:
        """SIGKILL the primary of partition 0 and time until its slot takes writes again."""
        tag = self.keys.tag(0)
        node = self.cluster.primary_of(key_slot(tag.encode()))
        self.killed_port = node.port
        killed_at = time.monotonic()
        node.kill()
        log.info("killed the primary on port %d (partition 0 and its slot range)", node.port)
        self._probe = threading.Thread(target=self._time_recovery, args=(f"{tag}:probe", killed_at), daemon=True)
        self._probe.start()

    def _time_recovery(self, key: str, killed_at: float) -> None:
        client = connect(self.url, socket_timeout=2.0)
        try:
            while True:
                try:
                    client.set(key, b"1", px=1000)
                    break
                except Exception:  # noqa: BLE001 - the slot is unserved until the replica takes over
                    time.sleep(0.05)
        finally:
            client.close()
        self.recovered_s = time.monotonic() - killed_at
        log.info("partition 0's slot took writes again %.1f s after the primary died", self.recovered_s)

    def stop(self) -> None:
        """Stop every node."""
        if self._probe is not None:
            self._probe.join(timeout=30)
        self.cluster.stop()
