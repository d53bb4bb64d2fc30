"""The client type and error classes callers outside the broker use, under broker names, and
which Redis failures are outages (wait and retry) rather than faults of the message.

Code outside ``broker/`` never imports ``redis``: it annotates clients as ``Redis`` and catches
these classes. They are redis-py's own classes (aliases), so nothing is wrapped or re-raised.

A refused command costs a worker time, not a delivery attempt, when Redis is out of memory
(``OOM`` under ``noeviction``), a read-only replica (``READONLY``), still loading its data
(``LOADING``), without a master or cluster quorum (``MASTERDOWN``, ``CLUSTERDOWN``,
``TRYAGAIN``, ``NOREPLICAS``), busy running a script (``BUSY``), or unreachable (a refused,
reset or timed-out connection). Everything else (``NOPERM``, ``WRONGTYPE``, bad credentials...)
is not transient.
"""

from __future__ import annotations

import re
from typing import TypeAlias

import redis
from redis import exceptions as _exc
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    SlotNotCoveredError,
    TryAgainError,
)

__all__ = [
    "TRANSIENT_CODES",
    "UNREACHABLE",
    "AuthenticationFailed",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerTimeout",
    "CommandRefused",
    "NoPermission",
    "OutOfMemoryError",
    "Redis",
    "TryAgainError",
    "describe",
    "is_noperm",
    "is_redis_error",
    "is_transient",
]

Redis: TypeAlias = redis.Redis
"""The client type (redis-py's ``Redis``, bytes responses) every broker function takes."""

BrokerError = _exc.RedisError
"""Base class of every error the client raises."""

BrokerConnectionError = _exc.ConnectionError
"""The server could not be reached, or the connection broke."""

BrokerTimeout = _exc.TimeoutError
"""A command did not answer within the socket timeout."""

AuthenticationFailed = _exc.AuthenticationError
"""The server refused the credentials in the URL."""

CommandRefused = _exc.ResponseError
"""The server answered a command with an error (NOGROUP, WRONGTYPE, NOPERM, ...)."""

NoPermission = _exc.NoPermissionError
"""The server's ACL refused a command or key (``NOPERM``)."""

UNREACHABLE: tuple[type[Exception], ...] = (BrokerConnectionError, BrokerTimeout, OSError, SlotNotCoveredError)
"""What a lost or unreachable server raises (on a cluster also a slot no reachable primary serves,
while a replica takes over): catch these to retry with a back-off."""


def is_noperm(exc: BaseException) -> bool:
    """Whether ``exc`` is an ACL refusal (a misconfiguration to fail loudly on, not to retry)."""
    return isinstance(exc, NoPermission) or (isinstance(exc, CommandRefused) and str(exc).startswith("NOPERM"))

TRANSIENT_CODES = ("OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "BUSY")
"""Redis error codes that mean "not now" rather than "never"."""

_TRANSIENT_TYPES: tuple[type[redis.RedisError], ...] = (
    OutOfMemoryError, ReadOnlyError, BusyLoadingError, ClusterDownError, TryAgainError,  # MasterDown: ClusterDown
)
_CODE = re.compile(rf"^(?:.*@user_script:\d+: -?)?({'|'.join(TRANSIENT_CODES)})\b", re.DOTALL)
_NAMES: dict[type[Exception], str] = {
    OutOfMemoryError: "Redis is out of memory (OOM)",
    ReadOnlyError: "Redis is a read-only replica (READONLY)",
    BusyLoadingError: "Redis is loading its data (LOADING)",
    ClusterDownError: "Redis cluster is down",
    SlotNotCoveredError: "Redis cluster has no primary for a slot",
    TryAgainError: "Redis asks to try again (TRYAGAIN)",
}


def is_redis_error(exc: BaseException) -> bool:
    """Whether ``exc`` came from Redis (a refused command or a broken connection)."""
    return isinstance(exc, redis.RedisError)


def is_transient(exc: BaseException) -> bool:
    """Whether ``exc`` is a Redis outage: retrying the same command later can succeed.

    Works on redis-py's typed errors and on a plain ``ResponseError`` whose text starts with
    one of :data:`TRANSIENT_CODES` (as a Lua script's failing call reports it).
    """
    if isinstance(exc, AuthenticationError):
        return False
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, SlotNotCoveredError, *_TRANSIENT_TYPES)):
        return True
    return isinstance(exc, redis.ResponseError) and _CODE.match(str(exc)) is not None


def describe(exc: BaseException) -> str:
    """A short phrase for logs and outage reasons, e.g. ``"Redis is out of memory (OOM)"``."""
    for kind, name in _NAMES.items():
        if isinstance(exc, kind):
            return name
    if isinstance(exc, redis.TimeoutError):
        return f"Redis timed out: {exc}"
    if isinstance(exc, redis.ConnectionError):
        return f"Redis connection failed: {exc}"
    if (m := _CODE.match(str(exc))) is not None:
        return f"Redis refused the command ({m.group(1)}): {exc}"
    return f"Redis error: {exc}"
