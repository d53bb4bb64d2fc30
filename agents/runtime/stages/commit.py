"""The commit stage: every handoff, halt and dead letter the stages queued, in one round trip.

Each is atomic on its own (next messages, scratchpad entry, run record, events and the XACK, keyed
by an idempotency marker); then each gets its outcome (committed, a duplicate, or stale: the entry
was reclaimed by another worker). Events still staged after it (of runs that had no commit in
this batch, such as tasks left for a retry) are written then; usually nothing is left, and that
costs no round trip.
"""

from __future__ import annotations

from baton.agents.runtime.role import RoleRuntime
from baton.agents.runtime.work import Batch

__all__ = ["CommitAll"]


class CommitAll:
    """Commits ``batch.commits`` and hands each its outcome."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if batch.commits:
            outcomes = self.rt.commit([c.handoff for c in batch.commits])
            pending, batch.commits = batch.commits, []
            for c, outcome in zip(pending, outcomes, strict=True):
                if c.then is not None:
                    c.then(outcome)
        self.rt.events.flush()
