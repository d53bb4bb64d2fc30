"""Worker liveness from heartbeat keys: who is alive, and whether a role is served on a host.

Each worker refreshes ``Keys.heartbeat(consumer)`` (a ``Heartbeat`` as JSON: ``broker/records.py``)
with a TTL; the key expiring is the worker's death. A payload that does not decode is skipped.
"""

from __future__ import annotations

import re
import time
from typing import Any

from .consumers import parse_consumer
from .errors import Redis
from .keys import Keys
from .records import Heartbeat, decode_heartbeat
from .stats import heartbeats
from .text import as_text

__all__ = ["check_worker", "live_workers"]


def live_workers(client: Redis, keys: Keys) -> list[Heartbeat]:
    """The heartbeats of every worker whose heartbeat has not expired, by consumer name."""
    beats = (decode_heartbeat(raw) for raw in heartbeats(client, keys))
    return sorted((b for b in beats if b is not None), key=lambda b: b.consumer)


def check_worker(client: Redis, keys: Keys, role: str, host: str, ttl_s: float,
                 *, now: float | None = None) -> str | None:
    """The consumer name of a worker of ``role`` on ``host`` that beat within ``ttl_s``; None if none did."""
    now = time.time() if now is None else now
    stem = keys.heartbeat("")
    pattern = keys.heartbeat(_glob_escape(role) + "-*")
    for key in client.scan_iter(match=pattern, count=500):
        consumer = as_text(key)[len(stem):]
        parts = parse_consumer(consumer)
        if parts is None or parts.role != role or parts.host != host:
            continue
        raw: Any = client.get(key)
        beat = decode_heartbeat(raw) if raw else None
        if beat is not None and now - beat.at < ttl_s:
            return consumer
    return None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
