"""Consumer names: one builder and one parser for ``<role>-<host>-<pid>-<suffix>``.

A name starts with its role (the ACL grants a role's workers the heartbeat keys
``hb:<role>-*``). Role names may contain ``-``, so the host part is written with its ``-``
turned into ``_`` (host names do not contain ``_``); the parser splits from the right.
"""

from __future__ import annotations

import os
import socket
import uuid
from typing import NamedTuple

__all__ = ["ConsumerName", "consumer_name", "parse_consumer"]


class ConsumerName(NamedTuple):
    """The parts of a consumer name."""

    role: str
    host: str
    pid: int
    suffix: str


def consumer_name(role: str, *, host: str | None = None, pid: int | None = None) -> str:
    """A consumer name unique to this process: role, host, pid and a random suffix."""
    host = socket.gethostname() if host is None else host
    pid = os.getpid() if pid is None else pid
    return f"{role}-{host.replace('-', '_')}-{pid}-{uuid.uuid4().hex[:6]}"


def parse_consumer(name: str | bytes) -> ConsumerName | None:
    """The parts of a name made by ``consumer_name``; None for a name of another shape."""
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    parts = text.rsplit("-", 3)
    if len(parts) != 4 or not parts[0] or not parts[1] or not parts[2].isdigit():
        return None
    role, host, pid, suffix = parts
    return ConsumerName(role, host.replace("_", "-"), int(pid), suffix)
