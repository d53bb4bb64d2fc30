"""The commit stage: every handoff, halt and dead letter the stages queued, in one round trip.

Each is atomic on its own (next messages, scratchpad entry, run record, events and the XACK, keyed
by an idempotency marker); then each gets its outcome (committed, a duplicate, or stale: the entry
was reclaimed by another worker, or ended: the run had ended, so its record and events are final and
the entry is dead-lettered instead, leaving the run as it is). Events still staged after it (of
runs that had no commit in this batch, such as tasks left for a retry) are written then; usually
nothing is left, and that costs no round trip.
"""

from __future__ import annotations

from ....broker import Handoff, Outcome
from ..admission import dead_letter
from ..role import RoleRuntime
from ..work import Batch

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
            self._dead_letter_ended([c.handoff for c, o in zip(pending, outcomes, strict=True) if o is Outcome.ENDED])
        self.rt.events.flush()

    def _dead_letter_ended(self, handoffs: list[Handoff]) -> None:
        """Entries of runs that had ended: to the dead-letter stream with the reason, their runs untouched."""
        if not handoffs:
            return
        rt = self.rt
        dead = [dead_letter(rt.keys, rt.spec.role, h.entry, f"run {h.run_id!r} has ended: its record and events "
                            "are final", None, rt.partition(h.entry), fail_run=False) for h in handoffs]
        rt.commit(dead)
        rt.counts.dead_lettered += len(dead)
        rt.metrics.dead_lettered(len(dead))
