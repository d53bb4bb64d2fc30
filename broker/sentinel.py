"""Clients for a Sentinel-managed primary: ``redis+sentinel://host:port[,host:port]/service[/db]``.

Sentinel gives one primary with replicas and automatic failover. The client asks the sentinels
for the current primary on every new connection (redis-py's ``SentinelConnectionPool``); when the
primary dies or is demoted (a ``READONLY`` reply), the connection is dropped and the ``Retry``
reconnects to whichever node the sentinels now name, so a failover is ridden over.

URL forms (the same user/password/db conventions as ``redis://`` URLs)::

    redis+sentinel://s1:26379,s2:26379,s3:26379/mymaster
    redis+sentinel://:secret@s1:26379,s2:26379/mymaster/2
    rediss+sentinel://user:secret@s1:26379/mymaster?sentinel_password=other

The URL's user and password authenticate to the data nodes (primary and replicas); the
sentinels use ``sentinel_password`` (and ``sentinel_username``) when given, else none.
``rediss+`` uses TLS for both.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import redis
import redis.asyncio
import redis.asyncio.sentinel
import redis.sentinel
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

from .packing import packer_kwargs

__all__ = ["SCHEMES", "SentinelURL", "connect_sentinel", "connect_sentinel_async", "is_sentinel_url", "parse"]

SCHEMES = ("redis+sentinel", "rediss+sentinel")
DEFAULT_SENTINEL_PORT = 26379

FAILOVER_RETRIES = 8
"""Reconnection attempts per command; with the backoff below they span a few seconds, about
one Sentinel failover (``down-after-milliseconds`` plus the election)."""


@dataclass(frozen=True, slots=True)
class SentinelURL:
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    ssl: bool = False
    sentinel_username: str | None = None
    sentinel_password: str | None = None


def is_sentinel_url(url: str) -> bool:
    """Whether ``url`` names a Sentinel-managed primary."""
    return url.split("://", 1)[0].lower() in SCHEMES


def parse(url: str) -> SentinelURL:
    """Split a ``redis+sentinel://`` URL; ``ValueError`` names what is wrong."""
    parts = urlsplit(url)
    if parts.scheme.lower() not in SCHEMES:
        raise ValueError(f"scheme must be one of {', '.join(SCHEMES)}")
    creds, _, hosts = parts.netloc.rpartition("@")
    username, _, password = creds.partition(":") if creds else ("", "", "")
    sentinels = [_host_port(h) for h in hosts.split(",") if h]
    if not sentinels:
        raise ValueError("no sentinel host:port given")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("the path must be /service-name or /service-name/db")
    query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    db_text = path[1] if len(path) == 2 else query.pop("db", "0")
    if not db_text.isdigit():
        raise ValueError(f"db must be a number, not {db_text!r}")
    sentinel_username, sentinel_password = query.pop("sentinel_username", None), query.pop("sentinel_password", None)
    if query:
        raise ValueError(f"unknown URL parameter(s): {', '.join(sorted(query))}")
    return SentinelURL(
        sentinels=sentinels, service=unquote(path[0]), db=int(db_text),
        username=unquote(username) or None, password=unquote(password) or None,
        ssl=parts.scheme.lower().startswith("rediss"),
        sentinel_username=sentinel_username, sentinel_password=sentinel_password,
    )


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        return text, DEFAULT_SENTINEL_PORT
    if not port.isdigit():
        raise ValueError(f"bad sentinel port in {text!r}")
    return host.strip("[]"), int(port)


def _retry(retries: int) -> Retry:
    return Retry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), max(retries, FAILOVER_RETRIES))


def _node_kwargs(u: SentinelURL, socket_timeout: float) -> dict[str, Any]:
    """Connection options of the data nodes (primary, replicas)."""
    kwargs: dict[str, Any] = {
        "db": u.db, "username": u.username, "password": u.password, "decode_responses": False,
        "socket_timeout": socket_timeout, "socket_connect_timeout": 5.0, "socket_keepalive": True,
        "health_check_interval": 15,
    }
    if u.ssl:
        kwargs["ssl"] = True
    return kwargs


def _sentinel_kwargs(u: SentinelURL) -> dict[str, Any]:
    kwargs: dict[str, Any] = {"socket_timeout": 2.0, "socket_connect_timeout": 2.0,
                              "username": u.sentinel_username, "password": u.sentinel_password}
    if u.ssl:
        kwargs["ssl"] = True
    return kwargs


def connect_sentinel(url: str, *, socket_timeout: float = 10.0, retries: int = FAILOVER_RETRIES) -> redis.Redis:
    """A client of the primary the sentinels of ``url`` name, re-resolved on every reconnection.

    ``retries`` (at least ``FAILOVER_RETRIES``) is the reconnection attempts per command.
    """
    u = parse(url)
    sentinel_class: Any = redis.sentinel.Sentinel
    sentinel = sentinel_class(u.sentinels, sentinel_kwargs=_sentinel_kwargs(u), **_node_kwargs(u, socket_timeout))
    client: redis.Redis = sentinel.master_for(
        u.service, redis_class=redis.Redis, retry=_retry(retries),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError], **packer_kwargs(),
    )
    return client


def connect_sentinel_async(url: str, *, socket_timeout: float = 30.0) -> redis.asyncio.Redis:
    """The asyncio twin of ``connect_sentinel`` (``redis.asyncio.sentinel``)."""
    u = parse(url)
    sentinel_class: Any = redis.asyncio.sentinel.Sentinel
    sentinel = sentinel_class(u.sentinels, sentinel_kwargs=_sentinel_kwargs(u), **_node_kwargs(u, socket_timeout))
    client: redis.asyncio.Redis = sentinel.master_for(
        u.service, redis_class=redis.asyncio.Redis, retry=_async_retry(),
        retry_on_error=[redis.ConnectionError, redis.TimeoutError],
    )
    return client


def _async_retry() -> Any:
    from redis.asyncio.retry import Retry as AsyncRetry

    return AsyncRetry(ExponentialWithJitterBackoff(base=0.1, cap=2.0), FAILOVER_RETRIES)
