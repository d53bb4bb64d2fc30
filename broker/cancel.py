"""Cancelling runs: the cancelled-runs set and the run record's ``cancelled`` status; deleting a thread
(which cancels its running and waiting turns)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from redis.exceptions import WatchError

from ..protocol import TERMINAL_STATUSES, Cancelled, RunStatus
from .drive import Op, awaiting, blocking, execute
from .ends import runs_ended_op
from .errors import Redis
from .events import append_events
from .keys import Keys
from .prefetch import cancelled_flags
from .text import as_text
from .threads import ThreadInfo, get_thread_op

__all__ = ["acancel_run", "adelete_thread", "cancel_op", "cancel_run", "cancelled", "delete_thread",
           "delete_thread_op"]


def cancelled(client: Redis, keys: Keys, run_ids: Sequence[str]) -> list[bool]:
    """Which of ``run_ids`` were cancelled (one SMISMEMBER per partition, pipelined)."""
    if not run_ids:
        return []
    pipe = client.pipeline(transaction=False)
    groups = keys.by_partition(run_ids)
    for p, ids in groups.items():
        pipe.smismember(keys.cancelled(p), ids)
    return cancelled_flags(run_ids, list(groups.values()), pipe.execute())


def cancel_op(keys: Keys, run_id: str) -> Op[str | None]:
    """Cancel ``run_id``: workers stop it at its next hop. Returns its status before, or None.

    The run record is marked ``cancelled`` and its ``cancelled`` event written at once unless it
    already finished; a hop in flight at this moment may still complete, and the hop after it is
    not run (a worker that halts it writes no second terminal event).
    """
    run_key = keys.run(run_id)
    pipe = yield lambda c: c.pipeline(transaction=True)
    try:
        while True:
            try:
                yield lambda _: pipe.watch(run_key)  # a run ending now stays ended
                raw = yield lambda _: pipe.hget(run_key, "status")
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
                yield lambda _: pipe.execute()
                break
            except WatchError:
                continue
    finally:
        yield lambda _: pipe.reset()
    yield from runs_ended_op(keys, [run_id])
    return before


cancel_run = blocking(cancel_op)
acancel_run = awaiting(cancel_op)


def delete_thread_op(keys: Keys, thread_id: str) -> Op[ThreadInfo | None]:
    """Delete ``thread_id``'s state and cancel its running and waiting turns (their records stay, as
    ``cancelled``); return what it was, or None when there was no such thread."""
    info = yield from get_thread_op(keys, thread_id)
    if info is None:
        return None
    pipe = yield lambda c: c.pipeline(transaction=True)
    pipe.delete(keys.thread(thread_id), keys.thread_turns(thread_id), keys.thread_queue(thread_id))
    pipe.zrem(keys.threads(keys.thread_partition(thread_id)), thread_id)
    yield execute(pipe)
    for run_id in [info.active, *info.queued]:
        if run_id:
            yield from cancel_op(keys, run_id)
    return info


delete_thread = blocking(delete_thread_op)
adelete_thread = awaiting(delete_thread_op)
