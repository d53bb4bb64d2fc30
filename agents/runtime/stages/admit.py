"""The admit stage: decode and check each entry read; queue dead letters for those that cannot run."""

from __future__ import annotations

from ....broker import Entry, Outcome
from ....broker.waits import waited_deliveries
from ..admission import admit, dead_letter
from ..role import RoleRuntime
from ..work import Batch, Commit, WorkItem

__all__ = ["Admit"]


class Admit:
    """``batch.entries`` -> ``batch.work`` (the admitted tasks); the rest are dead-lettered with their
    reason (``admission.admit``) in the batch's commit. Only entries past ``max_deliveries`` cost a
    read of the deliveries spent waiting (``broker.waits``)."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        rt.metrics.retried(sum(e.deliveries > 1 for e in batch.entries))
        waited = self._waited(batch.entries)
        for i, entry in enumerate(batch.entries):
            reason, task = admit(entry, rt.workflow.name, rt.spec, rt.settings, waited.get(i, 0))
            if reason:
                dead = dead_letter(rt.keys, rt.spec.role, entry, reason, task, rt.partition(entry))
                batch.commits.append(Commit(dead, self._dead_lettered))
            elif task is not None:
                batch.work.append(WorkItem(entry, task))

    def _waited(self, entries: list[Entry]) -> dict[int, int]:
        """Deliveries spent waiting, by index, of the entries past ``max_deliveries`` (usually none)."""
        rt = self.rt
        over = [i for i, e in enumerate(entries) if e.deliveries > rt.settings.max_deliveries]
        if not over:
            return {}
        counts = rt.ride_out_redis(lambda: waited_deliveries(rt.client, rt.keys, [entries[i] for i in over]),
                                   "counting deliveries spent waiting")
        return dict(zip(over, counts, strict=True))

    def _dead_lettered(self, outcome: Outcome) -> None:
        self.rt.counts.dead_lettered += 1
        self.rt.metrics.dead_lettered(1)
