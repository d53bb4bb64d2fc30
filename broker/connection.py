"""Connections to Redis from a ``REDIS_URL``, with redis-py's retry and backoff.

``redis://``, ``rediss://`` (TLS) and ``unix://`` URLs are accepted, with user and password
(ACL) in the URL; ``redis+sentinel://`` and ``rediss+sentinel://`` URLs go to a Sentinel-managed
primary (``broker/sentinel.py``); ``redis+cluster://host:port,host:port`` selects Redis Cluster
(``broker/cluster.py``). Responses are not decoded: stream entries may hold invalid UTF-8, which a
worker must be able to dead-letter rather than crash on.
"""

from __future__ import annotations

import re

import redis
import redis.asyncio
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .cluster import CLUSTER_UNREACHABLE, connect_cluster, connect_cluster_async, is_cluster_url
from .packing import packer_kwargs
from .sentinel import connect_sentinel, connect_sentinel_async, is_sentinel_url

__all__ = ["BrokerUnavailable", "connect", "connect_async", "describe_url", "ping"]


class BrokerUnavailable(RuntimeError):
    """Redis could not be reached; the message names the URL (without its password)."""


def describe_url(url: str) -> str:
    """Return ``url`` with any password masked (``sentinel_password=`` too), for messages and logs."""
    url = re.sub(r"(sentinel_password=)[^&]*", r"\1***", url)
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    creds, host = rest.rsplit("@", 1)
    user = creds.split(":", 1)[0] if ":" in creds else ""
    return f"{scheme}://{user}:***@{host}" if creds else f"{scheme}://{host}"


def connect(url: str, *, socket_timeout: float = 10.0, retries: int = 3) -> redis.Redis:
    """Open a client for ``url`` with keepalive, health checks and jittered retries.

    ``socket_timeout`` must exceed the longest blocking read (XREADGROUP BLOCK) used on it.
    """
    retry = Retry(ExponentialWithJitterBackoff(base=0.05, cap=2.0), retries)
    try:
        if is_sentinel_url(url):
            return connect_sentinel(url, socket_timeout=socket_timeout, retries=retries)
        if is_cluster_url(url):
            return connect_cluster(url, socket_timeout=socket_timeout, retries=retries)
        return redis.Redis.from_url(
            url,
            decode_responses=False,
            socket_timeout=socket_timeout,
            socket_connect_timeout=5.0,
            socket_keepalive=True,
            health_check_interval=15,
            retry=retry,
            retry_on_error=[redis.ConnectionError, redis.TimeoutError],
            **packer_kwargs(),
        )
    except ValueError as exc:
        raise BrokerUnavailable(f"invalid REDIS_URL {describe_url(url)!r}: {exc}") from None
    except CLUSTER_UNREACHABLE as exc:
        raise BrokerUnavailable(f"cannot reach Redis Cluster at {describe_url(url)}: {exc}") from None


def connect_async(url: str, *, socket_timeout: float = 30.0) -> redis.asyncio.Redis:
    """An asyncio client for ``url`` (for servers that wait on streams without a thread each).

    ``socket_timeout`` must exceed the longest blocking read (XREAD BLOCK) used on it.
    """
    try:
        if is_sentinel_url(url):
            return connect_sentinel_async(url, socket_timeout=socket_timeout)
        if is_cluster_url(url):
            return connect_cluster_async(url, socket_timeout=socket_timeout)
        return redis.asyncio.Redis.from_url(
            url, decode_responses=False, socket_timeout=socket_timeout, socket_connect_timeout=5.0,
            socket_keepalive=True, health_check_interval=15,
        )
    except ValueError as exc:
        raise BrokerUnavailable(f"invalid REDIS_URL {describe_url(url)!r}: {exc}") from None
    except CLUSTER_UNREACHABLE as exc:
        raise BrokerUnavailable(f"cannot reach Redis Cluster at {describe_url(url)}: {exc}") from None


def ping(client: redis.Redis, url: str) -> None:
    """Check the connection once; raise ``BrokerUnavailable`` with a one-line reason."""
    try:
        client.ping()
    except redis.AuthenticationError as exc:
        raise BrokerUnavailable(f"Redis at {describe_url(url)} refused the credentials: {exc}") from None
    except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
        raise BrokerUnavailable(f"cannot reach Redis at {describe_url(url)}: {exc}") from None
