"""A local Redis Cluster of real ``redis-server`` processes, for the tests and the chaos bench.

``LocalCluster(dir, primaries=3, replicas=1)`` starts ``primaries * (1 + replicas)`` servers
with ``--cluster-enabled yes`` on free loopback ports (``EmbeddedRedis``), joins them with
``redis-cli --cluster create ... --cluster-replicas N --cluster-yes`` (equal contiguous slot
ranges, in port order) and waits for ``cluster_state:ok`` on every node and for every replica's
first full sync (``master_link_status:up``).

That last wait matters: a replica that has not finished its first sync when its primary dies can
never be promoted (its data age is unbounded, past ``cluster-replica-validity-factor``: "Disconnected
from master for longer than allowed"), so the slots stay down (``CLUSTERDOWN``) until the primary
returns. Primaries start the sync at once (``repl-diskless-sync-delay 0``; the default waits 5 s
for more replicas to join one transfer).
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from baton.broker.embedded import EmbeddedRedis, find_redis_server

__all__ = ["LocalCluster"]


def _cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free too (so at most 55535)."""
    for _ in range(200):
        port = random.randint(20000, 55000)
        try:
            for p in (port, port + 10000):
                with socket.socket() as s:
                    s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


class LocalCluster:
    """A 3 + 3 (by default) Redis Cluster on loopback; use as a context manager."""

    def __init__(self, data_dir: Path, *, primaries: int = 3, replicas: int = 1, node_timeout_ms: int = 2000) -> None:
        self.data_dir = Path(data_dir)
        self.primaries = primaries
        self.replicas = replicas
        self.node_timeout_ms = node_timeout_ms
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        """The ``redis+cluster://`` URL naming every node as a startup node."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in self.nodes)

    def start(self, timeout: float = 30.0) -> LocalCluster:
        """Start the servers, create the cluster and wait until every node reports it ok."""
        try:
            return self._start(timeout)
        except BaseException:
            self.stop()
            raise

    def _start(self, timeout: float) -> LocalCluster:
        for i in range(self.primaries * (1 + self.replicas)):
            shutil.rmtree(self.data_dir / f"node{i}", ignore_errors=True)  # a fresh, empty cluster every start
            node = EmbeddedRedis(self.data_dir / f"node{i}", port=_cluster_port(), extra_args=[
                "--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--appendonly", "no",
                "--repl-diskless-sync-delay", "0",
            ])
            self.nodes.append(node.start())
        cli = shutil.which("redis-cli") or str(Path(find_redis_server()).with_name("redis-cli"))
        made = subprocess.run(
            [cli, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
             "--cluster-replicas", str(self.replicas), "--cluster-yes"],
            capture_output=True, text=True, timeout=timeout,
        )
        if made.returncode != 0:
            raise RuntimeError(f"redis-cli --cluster create failed: {(made.stdout + made.stderr)[-2000:]}")
        self.wait_ok(timeout)
        self.wait_synced(timeout)
        return self

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every running node reports ``cluster_state:ok`` and knows all the primaries."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._ok(n) for n in self.running()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"cluster not ok within {timeout}s")
            time.sleep(0.1)

    def wait_synced(self, timeout: float = 30.0) -> None:
        """Wait until every running replica has its primary's data (``master_link_status:up``): only
        such a replica can take over when its primary dies."""
        deadline = time.monotonic() + timeout
        while True:
            if all(self._synced(n) for n in self.running()):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"replicas not in sync within {timeout}s")
            time.sleep(0.1)

    @staticmethod
    def _synced(node: EmbeddedRedis) -> bool:
        with redis.Redis(port=node.port, socket_timeout=2) as c:
            try:
                info: Any = c.info("replication")
            except redis.RedisError:
                return False
        return info.get("role") != "slave" or info.get("master_link_status") == "up"

    def _ok(self, node: EmbeddedRedis) -> bool:
        with redis.Redis(port=node.port, socket_timeout=2) as c:
            try:
                info: Any = c.cluster("INFO")
            except redis.RedisError:
                return False
        if isinstance(info, bytes):
            info = dict(line.split(":", 1) for line in info.decode().split() if ":" in line)
        return bool(info.get("cluster_state") == "ok" and int(info.get("cluster_size", 0)) == self.primaries)

    def running(self) -> list[EmbeddedRedis]:
        """The nodes whose process is alive."""
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def primary_of(self, slot: int) -> EmbeddedRedis:
        """The running node that serves ``slot`` as primary right now."""
        for node in self.running():
            with redis.Redis(port=node.port, socket_timeout=2) as c:
                try:
                    role: Any = c.execute_command("ROLE")
                    shards: Any = c.execute_command("CLUSTER", "SLOTS")
                except redis.RedisError:
                    continue
            if role[0] != b"master":
                continue
            for lo, hi, owner, *_ in shards:
                if lo <= slot <= hi and int(owner[1]) == node.port:
                    return node
        raise LookupError(f"no running primary serves slot {slot}")

    def flush(self) -> None:
        """FLUSHALL every primary (between tests)."""
        for node in self.running():
            with redis.Redis(port=node.port, socket_timeout=5) as c:
                if c.execute_command("ROLE")[0] == b"master":
                    c.flushall()

    def stop(self) -> None:
        """Stop every server."""
        for node in self.nodes:
            node.stop()

    def __enter__(self) -> LocalCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
