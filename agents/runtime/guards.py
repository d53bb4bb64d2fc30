"""Run guards checked before a task reaches the model: cancellation and deadlines.

A task whose run was cancelled (``baton cancel RUN`` adds it to the cancelled-runs set) or
whose deadline has passed is not run: it is acked in the same atomic commit that marks the run
``cancelled`` or ``failed`` and publishes an ``error`` on the results stream, so waiters wake up.
The commit is keyed by the task's own id, like a normal handoff, so a redelivery cannot
produce a second error. Nothing here calls the model.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import redis

from baton.broker import Entry, Handoff, Keys
from baton.protocol import Error, Task, encode

__all__ = ["RunGuard", "cancel_run"]


class RunGuard:
    """Decides which tasks of a batch must stop before running, and builds their commits."""

    def __init__(self, client: redis.Redis, keys: Keys, role: str) -> None:
        self.client = client
        self.keys = keys
        self.role = role

    def halts(
        self, items: Sequence[tuple[Entry, Task]], *, now: float | None = None,
        cancelled: Sequence[bool] | None = None,
    ) -> dict[str, Handoff]:
        """Map entry id -> the commit that ends its run instead of running it (one round trip).

        ``cancelled``: the items' cancelled flags when the caller already read them (e.g. in the
        same round trip as the scratchpads); then nothing is read here.
        """
        if not items:
            return {}
        now = time.time() if now is None else now
        run_ids = [task.run_id for _, task in items]
        flags: Sequence[Any] = (
            cancelled if cancelled is not None
            else self.client.smismember(self.keys.cancelled(), run_ids)  # type: ignore[arg-type]
        )
        halted: dict[str, Handoff] = {}
        for (entry, task), cancelled in zip(items, flags, strict=True):
            if cancelled:
                halted[entry.id] = self._halt(entry, task, "cancelled", "run cancelled", now)
            elif task.deadline is not None and now > task.deadline:
                late = now - task.deadline
                reason = f"deadline passed {late:.1f}s before role {self.role!r} could start"
                halted[entry.id] = self._halt(entry, task, "failed", reason, now)
        return halted

    def _halt(self, entry: Entry, task: Task, status: str, reason: str, now: float) -> Handoff:
        p = self.keys.partition(task.run_id)
        err = Error(run_id=task.run_id, role=self.role, reason=reason, parent_id=task.id, hop=task.hop,
                    trace=task.trace)
        record: dict[str, str | float | int] = {"status": status, "error": reason, "role": self.role,
                                               "updated_at": now, "finished_at": now}
        return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id,
                       outputs=[(self.keys.results(p), encode(err))], record=record, partition=p)


def cancel_run(client: redis.Redis, keys: Keys, run_id: str) -> str | None:
    """Cancel ``run_id``: workers stop it at its next hop. Returns its status before, or None.

    The run record is marked ``cancelled`` at once unless it already finished; a hop in flight
    at this moment may still complete, and the hop after it is not run.
    """
    run_key = keys.run(run_id)
    raw = client.hget(run_key, "status")
    if raw is None:
        return None
    before = raw.decode() if isinstance(raw, bytes) else str(raw)
    if before in {"done", "failed", "cancelled"}:
        return before
    now = time.time()
    pipe = client.pipeline(transaction=True)
    pipe.sadd(keys.cancelled(), run_id)
    pipe.hset(run_key, mapping={"status": "cancelled", "error": "run cancelled", "updated_at": now,
                                "cancelled_at": now})
    pipe.execute()
    return before
