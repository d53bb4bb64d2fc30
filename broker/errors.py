"""Which Redis failures are outages (wait and retry) rather than faults of the message.

A refused command costs a worker time, not a delivery attempt, when Redis is out of memory
(``OOM`` under ``noeviction``), a read-only replica (``READONLY``), still loading its data
(``LOADING``), without a master or cluster quorum (``MASTERDOWN``, ``CLUSTERDOWN``,
``TRYAGAIN``, ``NOREPLICAS``), busy running a script (``BUSY``), or unreachable (a refused,
reset or timed-out connection). Everything else (``NOPERM``, ``WRONGTYPE``, bad credentials...)
is not transient.
"""

from __future__ import annotations

import re

import redis
from redis.exceptions import (
    AuthenticationError,
    BusyLoadingError,
    ClusterDownError,
    OutOfMemoryError,
    ReadOnlyError,
    TryAgainError,
)

__all__ = ["TRANSIENT_CODES", "describe", "is_redis_error", "is_transient"]

TRANSIENT_CODES = ("OOM", "READONLY", "LOADING", "MASTERDOWN", "CLUSTERDOWN", "TRYAGAIN", "NOREPLICAS", "BUSY")
"""Redis error codes that mean "not now" rather than "never"."""

_TRANSIENT_TYPES: tuple[type[redis.RedisError], ...] = (
    OutOfMemoryError, ReadOnlyError, BusyLoadingError, ClusterDownError, TryAgainError,  # MasterDown: ClusterDown
)
_CODE = re.compile(rf"^(?:.*@user_script:\d+: -?)?({'|'.join(TRANSIENT_CODES)})\b", re.DOTALL)
_NAMES: dict[type[redis.RedisError], str] = {
    OutOfMemoryError: "Redis is out of memory (OOM)",
    ReadOnlyError: "Redis is a read-only replica (READONLY)",
    BusyLoadingError: "Redis is loading its data (LOADING)",
    ClusterDownError: "Redis cluster is down",
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
    if isinstance(exc, (redis.ConnectionError, redis.TimeoutError, *_TRANSIENT_TYPES)):
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
