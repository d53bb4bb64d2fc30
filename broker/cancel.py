"""Cancelling runs: the cancelled-runs set and the run record's ``cancelled`` status."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.exceptions import WatchError

from baton.broker.errors import Redis
from baton.broker.events import append_events
from baton.broker.keys import Keys
from baton.broker.runs import cancelled_flags
from baton.broker.text import as_text
from baton.protocol import TERMINAL_STATUSES, Cancelled, RunStatus

__all__ = ["cancel_run", "cancelled"]


def cancelled(client: Redis, keys: Keys, run_ids: Sequence[str]) -> list[bool]:
    """Which of ``run_ids`` were cancelled (one SMISMEMBER per partition, pipelined)."""
    if not run_ids:
        return []
    pipe = client.pipeline(transaction=False)
    groups = keys.by_partition(run_ids)
    for p, ids in groups.items():
        pipe.smismember(keys.cancelled(p), ids)
    return cancelled_flags(run_ids, list(groups.values()), pipe.execute())


def cancel_run(
    client: Redis, keys: Keys, run_id: str) -> str | None:
    """Cancel ``run_id``: workers stop it at its next hop. Returns its status before, or None.

    The run record is marked ``cancelled`` and its ``cancelled`` event written at once unless it
    already finished; a hop in flight at this moment may still complete, and the hop after it is
    not run (a worker that halts it writes no second terminal event).
    """
    run_key = keys.run(run_id)
    with client.pipeline(transaction=True) as pipe:
        while True:
            try:
                pipe.watch(run_key)  # type: ignore[no-untyped-call]  # a run ending now stays ended
                raw = pipe.hget(run_key, "status")
                if raw is None:
                    return None
                before = as_text(raw)
                if before in TERMINAL_STATUSES:
                    return before
                now = time.time()
                pipe.multi()
                pipe.sadd(keys.run_cancelled(run_id), run_id)
                pipe.hset(run_key, mapping={"status": RunStatus.CANCELLED, "error": "run cancelled", "updated_at": now,
                                            "cancelled_at": now})
                append_events(pipe, keys, run_id, [Cancelled(run_id=run_id, at=now, reason="run cancelled")])
                pipe.execute()
                return before
            except WatchError:
                continue
