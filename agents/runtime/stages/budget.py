"""The budget stages around the model call: reserve each task's call before it, settle after it.

``Reserve`` takes the tasks whose run would pass a limit out of ``batch.work`` (to ``rejected``,
with the one-line reason: they dead-letter and their run fails); ``Settle`` gives back what the
calls did not use and counts the real tokens (``BudgetGate``). Tasks of runs without model limits
(``WorkItem.reserve`` False) cost neither: their usage rides in their commit (``HandOff``).
"""

from __future__ import annotations

from ..role import RoleRuntime
from ..work import Batch

__all__ = ["Reserve", "Settle"]


class Reserve:
    """One round trip reserves a model call and ``max_new_tokens`` per task."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.work:
            return
        batch.work, over = self.rt.budgets.reserve(batch.work)
        batch.rejected += over
        batch.called = [w for w in batch.work if w.reserve]
        for w in batch.work:
            w.usage_at_commit = not w.reserve


class Settle:
    """Ends the reservations of the tasks that reserved: the generated ones count their tokens."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if batch.called:
            backend = self.rt.backend
            self.rt.budgets.settle(batch.called, batch.done, backend.name if backend else "")
