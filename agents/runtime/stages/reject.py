"""The stages for what did not succeed: dead-letter the rejected tasks, leave the failed ones for a retry."""

from __future__ import annotations

from ....broker import Outcome
from ..admission import dead_letter
from ..role import RoleRuntime
from ..tracing import end_hop
from ..work import Batch, Commit

__all__ = ["Reject", "RetryLater"]


class Reject:
    """Tasks the model refused, over budget or outlasted by an outage: dead-lettered, their runs failed
    with the reason."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        for item, reason in batch.rejected:
            end_hop(item.span, outcome="dead_lettered", error=reason)
            dead = dead_letter(rt.keys, rt.spec.role, item.entry, reason, item.task, rt.partition(item.entry))
            batch.commits.append(Commit(dead, self._dead_lettered))

    def _dead_lettered(self, outcome: Outcome) -> None:
        self.rt.counts.dead_lettered += 1
        self.rt.metrics.dead_lettered(1)


class RetryLater:
    """Failed tasks stay pending (uncommitted); the batch backs off before the next read and their
    redelivery counts one attempt."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.failed:
            return
        rt = self.rt
        rt.counts.failed += len(batch.failed)
        for item in batch.failed:
            end_hop(item.span, outcome="retry", error="left pending for a retry")
        rt.metrics.failed(len(batch.failed))
        asked = max(item.retry_after for item in batch.failed)  # a handler's Retry(delay=...)
        attempts = min(max(item.entry.deliveries for item in batch.failed), rt.settings.max_deliveries)
        batch.backoff = max(rt.retry_backoff(attempts), asked)  # deliveries spent waiting may pass the maximum
