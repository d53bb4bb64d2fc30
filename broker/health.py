"""Worker liveness from heartbeat keys: who is alive, and whether a role is served on a host.

Each worker refreshes ``Keys.heartbeat(consumer)`` (a JSON payload with at least ``consumer``,
``role``, ``host``, ``pid`` and ``at``) with a TTL; the key expiring is the worker's death.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from baton.broker.consumers import parse_consumer
from baton.broker.errors import Redis
from baton.broker.keys import Keys
from baton.broker.stats import heartbeats
from baton.broker.text import as_text

__all__ = ["check_worker", "live_workers"]


def live_workers(client: Redis, keys: Keys) -> list[dict[str, Any]]:
    """The heartbeat payloads of every worker whose heartbeat has not expired (by consumer name)."""
    out: list[dict[str, Any]] = []
    for raw in heartbeats(client, keys):
        try:
            info = json.loads(raw)
        except ValueError:
            continue
        if isinstance(info, dict):
            out.append(info)
    return sorted(out, key=lambda w: str(w.get("consumer", "")))


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
        raw = client.get(key)
        try:
            at = float(json.loads(raw).get("at", 0)) if raw else 0.0
        except (ValueError, AttributeError, TypeError):
            continue
        if now - at < ttl_s:
            return consumer
    return None


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)
