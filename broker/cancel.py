"""Cancelling runs: the cancelled-runs set and the run record's ``cancelled`` status."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from baton.broker.errors import Redis
from baton.broker.keys import Keys
from baton.broker.runs import TERMINAL
from baton.broker.text import as_text

__all__ = ["cancel_run", "cancelled"]


def cancelled(client: Redis, keys: Keys, run_ids: Sequence[str]) -> list[bool]:
    """Which of ``run_ids`` were cancelled (one SMISMEMBER)."""
    if not run_ids:
        return []
    flags: Any = client.smismember(keys.cancelled(), list(run_ids))
    return [bool(f) for f in flags]


def cancel_run(client: Redis, keys: Keys, run_id: str) -> str | None:
    """Cancel ``run_id``: workers stop it at its next hop. Returns its status before, or None.

    The run record is marked ``cancelled`` at once unless it already finished; a hop in flight
    at this moment may still complete, and the hop after it is not run.
    """
    run_key = keys.run(run_id)
    raw = client.hget(run_key, "status")
    if raw is None:
        return None
    before = as_text(raw)
    if before in TERMINAL:
        return before
    now = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.sadd(keys.cancelled(), run_id)
    pipe.hset(run_key, mapping={"status": "cancelled", "error": "run cancelled", "updated_at": now,
                                "cancelled_at": now})
    pipe.execute()
    return before
