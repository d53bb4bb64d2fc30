"""Redis Cluster: ``redis+cluster://`` URLs, and reading streams that live in several hash slots.

``REDIS_URL=redis+cluster://[user:password@]host:port[,host:port...]`` (``rediss+cluster://``
for TLS) opens a redis-py ``RedisCluster`` on those startup nodes; it follows ``MOVED``/``ASK``
redirections itself and retries ``CLUSTERDOWN`` and lost connections with a jittered backoff
(long enough to ride over a replica's promotion after a primary dies).

Commands that name several keys must stay in one hash slot. The broker keeps them there
(``broker/keys.py``: every key of a run carries its partition's tag); a consumer whose streams
span several slots reads them with :class:`SlotFanIn`: one blocking ``XREADGROUP`` per slot in
a small thread pool, so an idle worker keeps a blocked read on every primary instead of polling.

The cluster client is returned under the ``Redis`` type the broker annotates with: it offers
the same command methods (cluster-aware), and redis-py routes each to the right node.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import unquote

import redis
import redis.asyncio
import redis.asyncio.cluster
import redis.asyncio.retry
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.crc import key_slot
from redis.exceptions import RedisClusterException
from redis.retry import Retry

if TYPE_CHECKING:
    from .entry import Entry

__all__ = ["CLUSTER_SCHEMES", "CLUSTER_UNREACHABLE", "SlotFanIn", "connect_cluster", "connect_cluster_async",
           "is_cluster", "is_cluster_url", "slot_groups"]

log = logging.getLogger("baton.broker")

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")
"""URL schemes that select Redis Cluster (the second one with TLS)."""

CLUSTER_UNREACHABLE: tuple[type[Exception], ...] = (RedisClusterException, redis.RedisError, OSError)
"""What opening a cluster client raises when no startup node answers with a usable slot map."""

CLUSTER_RETRIES = 8
"""Retries of one command over a failover: with the backoff capped at 2 s, ~10 s in all."""


def is_cluster_url(url: str) -> bool:
    """Whether ``url`` asks for Redis Cluster."""
    return url.split("://", 1)[0].lower() in CLUSTER_SCHEMES


def _parse(url: str) -> tuple[list[tuple[str, int]], dict[str, Any]]:
    """The startup nodes and client options of a cluster URL; ValueError when malformed."""
    scheme, _, rest = url.partition("://")
    rest = rest.split("/", 1)[0].split("?", 1)[0]
    creds, _, hosts = rest.rpartition("@")
    options: dict[str, Any] = {"ssl": scheme.lower() == "rediss+cluster"}
    if creds:
        user, _, password = creds.partition(":")
        options.update(username=unquote(user) or None, password=unquote(password) or None)
    nodes: list[tuple[str, int]] = []
    for part in hosts.split(","):
        host, _, port = part.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"startup node {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    return nodes, options


def _backoff() -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(base=0.05, cap=2.0)


def connect_cluster(url: str, *, socket_timeout: float, retries: int = CLUSTER_RETRIES) -> redis.Redis:
    """A ``RedisCluster`` client on the startup nodes of ``url`` (bytes responses)."""
    nodes, options = _parse(url)
    client = RedisCluster(
        startup_nodes=[ClusterNode(h, p) for h, p in nodes],  # type: ignore[no-untyped-call]
        retry=Retry(_backoff(), max(retries, CLUSTER_RETRIES)),
        decode_responses=False, socket_timeout=socket_timeout, socket_connect_timeout=5.0,
        socket_keepalive=True, health_check_interval=15, **options,
    )
    return cast(redis.Redis, client)


def connect_cluster_async(url: str, *, socket_timeout: float) -> redis.asyncio.Redis:
    """An asyncio ``RedisCluster`` client on the startup nodes of ``url`` (bytes responses)."""
    nodes, options = _parse(url)
    client = redis.asyncio.cluster.RedisCluster(
        startup_nodes=[redis.asyncio.cluster.ClusterNode(h, p) for h, p in nodes],
        retry=redis.asyncio.retry.Retry(_backoff(), CLUSTER_RETRIES),
        decode_responses=False, socket_timeout=socket_timeout, socket_connect_timeout=5.0,
        socket_keepalive=True, health_check_interval=15, **options,
    )
    return cast(redis.asyncio.Redis, client)


_CLUSTER: dict[type, bool] = {}


def is_cluster(client: object) -> bool:
    """Whether ``client`` talks to a Redis Cluster (answered once per class, as ``drive.is_async``)."""
    kind = type(client)
    known = _CLUSTER.get(kind)
    if known is None:
        known = _CLUSTER[kind] = issubclass(kind, RedisCluster | redis.asyncio.cluster.RedisCluster)
    return known


def slot_groups(keys: Sequence[str]) -> list[list[str]]:
    """``keys`` grouped by hash slot (in first-seen order): one multi-key command per group."""
    groups: dict[int, list[str]] = {}
    for key in keys:
        groups.setdefault(key_slot(key.encode()), []).append(key)
    return list(groups.values())


HARVEST_MARGIN_S = 0.05
"""How long past its BLOCK a read is waited for; one that answers later is collected by the next call."""

ReadOne = Callable[[list[str], bool, int, "int | None"], "list[Entry]"]
"""Read ``(streams, pending, count, block_ms)`` of one hash slot."""


class SlotFanIn:
    """Reads of a consumer group whose streams span several hash slots (cluster mode).

    New entries: one blocking read per slot runs in a thread of a small pool; a call returns
    what the reads that finished first got, and leaves the others blocked for the next call.
    Own pending entries: one non-blocking read per slot, plus whatever finished reads hold.
    """

    def __init__(self, groups: list[list[str]], read_one: ReadOne) -> None:
        self.groups = groups
        self.read_one = read_one
        self._pool = ThreadPoolExecutor(max_workers=len(groups), thread_name_prefix="baton-read")
        self._inflight: dict[int, Future[list[Entry]]] = {}

    def read(self, *, pending: bool, count: int, block_ms: int | None) -> list[Entry]:
        """Own pending entries of every slot, or the new entries of the slots that answer first."""
        if pending:
            entries = self._harvest(timeout=0)
            seen = {(e.stream, e.id) for e in entries}
            for streams in self.groups:
                entries += [e for e in self.read_one(streams, True, count, None) if (e.stream, e.id) not in seen]
            return entries
        for i, streams in enumerate(self.groups):
            if i not in self._inflight:
                self._inflight[i] = self._pool.submit(self.read_one, streams, False, count, block_ms)
        return self._harvest(timeout=(block_ms or 0) / 1000 + HARVEST_MARGIN_S)

    def _harvest(self, timeout: float) -> list[Entry]:
        if not self._inflight:
            return []
        done, _ = wait(self._inflight.values(), timeout=timeout, return_when=FIRST_COMPLETED)
        entries: list[Entry] = []
        error: BaseException | None = None
        for i, fut in list(self._inflight.items()):
            if fut not in done:
                continue
            del self._inflight[i]
            try:
                entries += fut.result()
            except Exception as exc:  # re-raised below when nothing else came in
                error = error or exc
        if error is not None:
            if not entries:
                raise error
            log.warning("a read of one hash slot failed (%s); other slots answered", error)
        return entries

    def close(self, *, wait: bool = False) -> None:
        """Stop the pool once the blocked reads return (their entries stay pending, reclaimed later);
        with ``wait``, return only when they have."""
        self._pool.shutdown(wait=wait, cancel_futures=True)
