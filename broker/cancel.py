"""Cancelling runs: the cancelled-runs set and the run record's ``cancelled`` status; deleting a thread
(which cancels its running and waiting turns)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.exceptions import WatchError

from baton.broker.ends import runs_ended
from baton.broker.errors import Redis
from baton.broker.events import append_events
from baton.broker.keys import Keys
from baton.broker.runs import cancelled_flags
from baton.broker.text import as_text
from baton.broker.threads import ThreadInfo, get_thread
from baton.protocol import TERMINAL_STATUSES, Cancelled, RunStatus

__all__ = ["cancel_run", "cancelled", "delete_thread"]


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
                runs_ended(client, keys, [run_id])
                return before
            except WatchError:
                continue


def delete_thread(client: Redis, keys: Keys, thread_id: str) -> ThreadInfo | None:
    """Delete ``thread_id``'s state and cancel its running and waiting turns (their records stay, as
    ``cancelled``); return what it was, or None when there was no such thread."""
    info = get_thread(client, keys, thread_id)
    if info is None:
        return None
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.thread(thread_id), keys.thread_turns(thread_id), keys.thread_queue(thread_id))
    pipe.zrem(keys.threads(keys.thread_partition(thread_id)), thread_id)
    pipe.execute()
    for run_id in [info.active, *info.queued]:
        if run_id:
            cancel_run(client, keys, run_id)
    return info
