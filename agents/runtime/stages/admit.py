"""The admit stage: decode and check each entry read; queue dead letters for those that cannot run."""

from __future__ import annotations

from baton.agents.runtime.admission import admit, dead_letter
from baton.agents.runtime.role import RoleRuntime
from baton.agents.runtime.work import Batch, Commit, WorkItem
from baton.broker import Outcome

__all__ = ["Admit"]


class Admit:
    """``batch.entries`` -> ``batch.work`` (the admitted tasks); the rest are dead-lettered with their
    reason (``admission.admit``) in the batch's commit."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        rt.metrics.retried(sum(e.deliveries > 1 for e in batch.entries))
        for entry in batch.entries:
            reason, task = admit(entry, rt.workflow.name, rt.spec, rt.settings)
            if reason:
                dead = dead_letter(rt.keys, rt.spec.role, entry, reason, task, rt.partition(entry))
                batch.commits.append(Commit(dead, self._dead_lettered))
            elif task is not None:
                batch.work.append(WorkItem(entry, task))

    def _dead_lettered(self, outcome: Outcome) -> None:
        self.rt.counts.dead_lettered += 1
        self.rt.metrics.dead_lettered(1)
