"""A real Sentinel group on free ports: 1 primary, 1 replica (``--replicaof``), 3 sentinels.

Each sentinel is ``redis-server <conf> --sentinel`` with its own conf file in the test's tmp dir,
``down-after-milliseconds`` and ``failover-timeout`` kept low so a failover takes seconds.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis, find_redis_server, free_port
from tests.waiting import wait_for

SERVICE = "baton-primary"
DOWN_AFTER_MS = 1000
FAILOVER_TIMEOUT_MS = 3000


class SentinelGroup:
    """Two data nodes and three sentinels watching them; every process is stopped at teardown."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.primary = EmbeddedRedis(root / "node-a")
        self.replica: EmbeddedRedis | None = None
        self.nodes: list[EmbeddedRedis] = [self.primary]
        self.sentinel_ports: list[int] = []
        self.sentinels: list[subprocess.Popen[bytes]] = []

    def start(self) -> SentinelGroup:
        """Start the nodes, then the sentinels; wait until they all see each other."""
        self.primary.start()
        self.replica = EmbeddedRedis(self.root / "node-b",
                                     extra_args=["--replicaof", "127.0.0.1", str(self.primary.port)])
        self.nodes.append(self.replica.start())
        for i in range(3):
            self.sentinels.append(self._sentinel(i))
        wait_for(self.healthy, timeout=30, what="the sentinels to see the replica and each other")
        return self

    def _sentinel(self, index: int) -> subprocess.Popen[bytes]:
        port = free_port()
        work = self.root / f"sentinel-{index}"
        work.mkdir(parents=True)
        conf = work / "sentinel.conf"
        conf.write_text("\n".join([
            f"port {port}", "bind 127.0.0.1", "daemonize no", f"dir {work}", f"logfile {work / 'sentinel.log'}",
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {DOWN_AFTER_MS}",
            f"sentinel failover-timeout {SERVICE} {FAILOVER_TIMEOUT_MS}",
            f"sentinel parallel-syncs {SERVICE} 1", "",
        ]))
        self.sentinel_ports.append(port)
        return subprocess.Popen([find_redis_server(), str(conf), "--sentinel"], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL, start_new_session=True)

    @property
    def url(self) -> str:
        """The ``redis+sentinel://`` URL of the group."""
        hosts = ",".join(f"127.0.0.1:{p}" for p in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{SERVICE}"

    def sentinel_client(self, index: int = 0) -> redis.Redis:
        """A plain client of one sentinel."""
        return redis.Redis(port=self.sentinel_ports[index], socket_timeout=2, decode_responses=True)

    def primary_port(self) -> int:
        """The primary's port as the sentinels name it now."""
        with self.sentinel_client() as s:
            _host, port = s.sentinel_get_master_addr_by_name(SERVICE)
            return int(port)

    def node(self, port: int) -> EmbeddedRedis:
        """The data node listening on ``port``."""
        return next(n for n in self.nodes if n.port == port)

    def healthy(self) -> bool:
        """Every sentinel knows the primary, a replica in sync and the two other sentinels."""
        try:
            for i in range(len(self.sentinels)):
                with self.sentinel_client(i) as s:
                    replicas = s.sentinel_slaves(SERVICE)
                    if len(s.sentinel_sentinels(SERVICE)) < 2:
                        return False
                    if not any(r["master-link-status"] == "ok" and "s_down" not in r["flags"]
                               and "disconnected" not in r["flags"] for r in replicas):
                        return False
        except (redis.ConnectionError, redis.ResponseError, KeyError):
            return False
        return True

    def failover(self) -> int:
        """``SENTINEL FAILOVER`` once; return the new primary's port when the sentinels name it."""
        before = self.primary_port()
        with self.sentinel_client() as s:
            s.execute_command("SENTINEL", "FAILOVER", SERVICE)
        return self._new_primary(before)

    def kill_primary(self) -> int:
        """SIGKILL the primary process; return the port of the replica the sentinels promote."""
        before = self.primary_port()
        self.node(before).kill()
        return self._new_primary(before)

    def _new_primary(self, before: int) -> int:
        wait_for(lambda: self.primary_port() != before, timeout=60, what="the sentinels to promote the replica")
        port = self.primary_port()
        with redis.Redis(port=port) as new:
            wait_for(lambda: new.info("replication")["role"] == "master", timeout=30, what="the promotion")
        return port

    def stop(self) -> None:
        """Stop the sentinels, then the nodes."""
        for p in self.sentinels:
            if p.poll() is None:
                p.kill()
            p.wait()
        for n in self.nodes:
            n.stop()


@pytest.fixture
def sentinel_group(tmp_path: Path) -> Iterator[SentinelGroup]:
    """A started Sentinel group of this test."""
    group = SentinelGroup(tmp_path / "sentinel-group")
    try:
        yield group.start()
    finally:
        group.stop()
