"""The hand-off stage: each done task's next message, scratchpad entry and run record, queued for
the commit (one atomic step per task, one round trip for the batch). A task that reserved no model
call (its run has no model limits) has its usage counted in the same commit
(``broker.budget.usage_counts``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from ....broker import Outcome
from ....broker.budget import usage_counts
from ...backends import Generation
from ..handoff import HopOutput
from ..logs import bind
from ..role import RoleRuntime
from ..tracing import end_hop
from ..work import Batch, Commit, WorkItem

__all__ = ["HandOff"]

log = logging.getLogger("baton.worker")


class HandOff:
    """``batch.done`` -> handoffs (routes, fan-out, the next task or the result) in the commit; a role
    with review hands off when its review is decided (``review.Park``, ``review.Resume``)."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.done or self.rt.spec.review:
            return
        rt, finished = self.rt, time.time()
        model = rt.backend.name if rt.backend else ""
        for item, g in batch.done:
            handoff = rt.handoffs.build(HopOutput(
                item.entry, item.task, g.text, g.new_tokens, item.started, finished, prompt=item.prompt,
                truncated=g.truncated, ctx=item.ctx, span=item.span, decision=item.decision, notes=item.notes,
                counts=usage_counts(rt.spec.role, model, g.new_tokens) if item.usage_at_commit else None))
            batch.commits.append(Commit(handoff, self._handed_off(item, g, finished)))

    def _handed_off(self, item: WorkItem, g: Generation, finished: float) -> Callable[[Outcome], None]:
        rt = self.rt

        def then(outcome: Outcome) -> None:
            end_hop(item.span, tokens=g.new_tokens, outcome=outcome.name.lower())
            if outcome is Outcome.COMMITTED:
                rt.counts.processed += 1
                rt.metrics.processed()
                rt.metrics.step(finished - item.started, g.new_tokens)
                if log.isEnabledFor(logging.INFO):  # no log context built for a line nobody keeps
                    with bind(run_id=item.task.run_id, msg_id=item.task.id):
                        log.info("hop %d handed to %s: %d tokens in %.3fs", item.task.hop,
                                 rt.spec.next or "results", g.new_tokens, finished - item.started)
        return then
