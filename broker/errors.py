"""The client type and error classes callers outside the broker use, under broker names.

Code outside ``broker/`` never imports ``redis``: it annotates clients as ``Redis`` and catches
these classes. They are redis-py's own classes (aliases), so nothing is wrapped or re-raised.
"""

from __future__ import annotations

from typing import TypeAlias

import redis
from redis import exceptions as _exc

__all__ = [
    "UNREACHABLE",
    "AuthenticationFailed",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerTimeout",
    "CommandRefused",
    "NoPermission",
    "Redis",
    "is_noperm",
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

UNREACHABLE: tuple[type[Exception], ...] = (BrokerConnectionError, BrokerTimeout, OSError)
"""What a lost or unreachable server raises: catch these to retry with a back-off."""


def is_noperm(exc: BaseException) -> bool:
    """Whether ``exc`` is an ACL refusal (a misconfiguration to fail loudly on, not to retry)."""
    return isinstance(exc, NoPermission) or (isinstance(exc, CommandRefused) and str(exc).startswith("NOPERM"))
