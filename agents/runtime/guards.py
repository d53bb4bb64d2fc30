"""Run guards checked before a task reaches the model: cancellation and deadlines.

A task whose run was cancelled (``baton cancel RUN`` adds it to the cancelled-runs set) or
whose deadline has passed is not run: it is acked in the same atomic commit that marks the run
``cancelled`` or ``failed`` and publishes an ``error`` on the results stream, so waiters wake up.
The commit is keyed by the task's own id, like a normal handoff, so a redelivery cannot
produce a second error. A late run's commit writes its ``failed`` event; a cancelled run's
``cancelled`` event was written by ``broker.cancel_run`` when it was cancelled, so none is written
here (a run has one terminal event). Nothing here calls the model or Redis itself: the flags
come from ``broker.cancel``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ...broker import Entry, Handoff, Keys, Redis
from ...broker import cancelled as _cancelled
from ...protocol import Error, RunStatus, Task, encode
from .events import failed_events

__all__ = ["RunGuard"]


class RunGuard:
    """Decides which tasks of a batch must stop before running, and builds their commits."""

    def __init__(self, client: Redis, keys: Keys, role: str) -> None:
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
        flags = cancelled if cancelled is not None else _cancelled(self.client, self.keys, run_ids)
        halted: dict[str, Handoff] = {}
        for (entry, task), stop in zip(items, flags, strict=True):
            if stop:
                halted[entry.id] = self.halt(entry, task, RunStatus.CANCELLED, "run cancelled", now)
            elif task.deadline is not None and now > task.deadline:
                late = now - task.deadline
                reason = f"deadline passed {late:.1f}s before role {self.role!r} could start"
                halted[entry.id] = self.halt(entry, task, RunStatus.FAILED, reason, now)
        return halted

    def halt(self, entry: Entry, task: Task, status: str, reason: str, now: float) -> Handoff:
        """The commit that ends ``task``'s run with ``status`` (``failed``, ``cancelled``) and ``reason``."""
        p = self.keys.partition(task.run_id)
        err = Error(run_id=task.run_id, role=self.role, reason=reason, parent_id=task.id, hop=task.hop,
                    trace=task.trace)
        record: dict[str, str | float | int] = {"status": status, "error": reason, "role": self.role,
                                               "updated_at": now, "finished_at": now}
        events = failed_events(task.run_id, self.role, reason, now, hop=task.hop) if status == RunStatus.FAILED else []
        return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id,
                       outputs=[(self.keys.results(p), encode(err))], record=record, partition=p, events=events,
                       ends_ended=status == RunStatus.CANCELLED)  # cancel_run set the status: wake the waiters

