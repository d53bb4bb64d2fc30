"""The guard stage: end cancelled and late runs instead of running them.

One round trip reads the batch's cancelled flags and, for run-scoped memory without fan-in, the
scratchpads the prompt shows (kept on each item for the prepare stage).
"""

from __future__ import annotations

from collections.abc import Sequence

from baton.agents.runtime.role import RoleRuntime
from baton.agents.runtime.work import Batch, Commit, WorkItem
from baton.broker import cancelled_and_scratchpads

__all__ = ["Guard", "read_flags"]


def read_flags(rt: RoleRuntime, work: Sequence[WorkItem]) -> list[bool]:
    """Cancelled flags of ``work``; for run-scoped memory without fan-in its scratchpads too (kept
    on each item), read in the same round trip."""
    if not work:
        return []
    early = rt.spec.memory == "run" and not rt.spec.join
    pads = [(w.task.run_id, rt.spec.agent) for w in work] if early else []
    flags, pads_read = cancelled_and_scratchpads(rt.client, rt.keys, [w.task.run_id for w in work], pads)
    for w, memory in zip(work if early else [], pads_read, strict=True):
        w.memory = memory
    return flags


class Guard:
    """Halts (``RunGuard``) go to the batch's commit; the other items go on."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.work:
            return
        cancelled = read_flags(self.rt, batch.work)
        halts = self.rt.guard.halts([(w.entry, w.task) for w in batch.work], cancelled=cancelled)
        if halts:
            batch.commits += [Commit(h) for h in halts.values()]
            batch.work = [w for w in batch.work if w.entry.id not in halts]
