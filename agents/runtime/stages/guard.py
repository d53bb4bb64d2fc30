"""The guard stage: end cancelled and late runs instead of running them.

One round trip reads the batch's cancelled flags, which runs have budget limits (an item of a run
without model limits skips the reservation: ``WorkItem.reserve``) and, for run-scoped memory
without fan-in, the scratchpads the prompt shows (kept on each item for the prepare stage); the
same round trip writes the ``hop_started`` event of each task that goes on (not of a cancelled
or late run; a fan-in role's parts announce their hop once gathered, in the prepare stage).
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ....broker import before_run
from ....protocol import HopStarted, encode_event
from ..admission import dead_letter
from ..role import RoleRuntime
from ..work import Batch, Commit, WorkItem

__all__ = ["Guard", "read_flags"]


def read_flags(rt: RoleRuntime, work: Sequence[WorkItem], *, start_at: float | None = None) -> list[bool]:
    """Cancelled flags of ``work``; in the same round trip whether each run must reserve its model
    calls (kept on each item; a role with review always reserves: its hand-off comes later), for
    run-scoped memory without fan-in its scratchpads (kept on each item) and, given ``start_at``
    (the time the hops start; not for a fan-in role), the ``hop_started`` event of each task that
    is neither cancelled nor late (``WorkItem.announced``)."""
    if not work:
        return []
    early = rt.spec.memory == "run" and not rt.spec.join
    pads = [(w.task.run_id, rt.spec.agent) for w in work] if early else []
    started = [] if rt.spec.join or start_at is None else [_started(rt, w, start_at) for w in work]
    read = before_run(rt.client, rt.keys, [w.task.run_id for w in work], pads, budgets=not rt.spec.review,
                      started=started, tenants=True)
    for w, owner in zip(work, read.tenants, strict=True):
        w.owner = owner
    for w, event in zip(work, started, strict=False):
        w.announced = bool(event)
    for w, memory in zip(work if early else [], read.pads, strict=True):
        w.memory = [*memory]
    for w, limited in zip(work, read.limited, strict=True):
        w.reserve = limited or bool(rt.spec.review)
    return read.cancelled


def _started(rt: RoleRuntime, w: WorkItem, now: float) -> bytes:
    """The encoded ``hop_started`` of ``w`` (``b""`` for a task past its deadline: it will not start)."""
    if w.task.deadline is not None and now > w.task.deadline:
        return b""
    return encode_event(HopStarted(run_id=w.task.run_id, role=rt.spec.role, agent=rt.spec.agent, hop=w.task.hop,
                                   msg_id=w.task.id, consumer=rt.consumer))


class Guard:
    """Halts (``RunGuard``) go to the batch's commit; the other items go on. An entry whose ``tenant``
    is not its run's (only the submit path sets it, with the record) is dead-lettered as forged,
    its run left as it is."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.work:
            return
        now = time.time()
        cancelled = read_flags(self.rt, batch.work, start_at=now)
        forged = {w.entry.id for w in batch.work if w.owner is not None and w.owner != w.task.tenant}
        if forged:
            cancelled = [c for w, c in zip(batch.work, cancelled, strict=True) if w.entry.id not in forged]
            for w in [w for w in batch.work if w.entry.id in forged]:
                reason = (f"the entry names tenant {w.task.tenant!r} but run {w.task.run_id!r} is "
                          f"{w.owner!r}'s: the tenant is set by the submit path only")
                dead = dead_letter(self.rt.keys, self.rt.spec.role, w.entry, reason, w.task,
                                   self.rt.partition(w.entry), fail_run=False)
                batch.commits.append(Commit(dead))
            batch.work = [w for w in batch.work if w.entry.id not in forged]
        halts = self.rt.guard.halts([(w.entry, w.task) for w in batch.work], now=now, cancelled=cancelled)
        if halts:
            batch.commits += [Commit(h) for h in halts.values()]
            batch.work = [w for w in batch.work if w.entry.id not in halts]
