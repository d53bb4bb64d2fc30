"""Human review in the worker: park a reviewed role's output, hand off a decided one.

A role with ``review = "human"`` parks each generated output (``broker.reviews.park``: one atomic
step) instead of handing it off. ``baton review approve`` publishes a continuation of the parked
task (``Task.review`` set) on the role's stream; the worker that reads it hands the decided
output off exactly as a normal hop would (routes, fan-out, shared memory, the next task or the
result), without calling the model and without a second scratchpad entry. A decision that
arrives after the run's deadline fails the run with that reason; a cancelled run stays cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from baton.agents.backends import Generation
from baton.agents.runtime.logs import bind
from baton.agents.runtime.steps import StepContext
from baton.broker import Handoff, Outcome
from baton.broker.reviews import Park, park
from baton.broker.runs import RunStatus

if TYPE_CHECKING:
    from baton.agents.runtime.worker import Worker, _Work

__all__ = ["ReviewStage"]

log = logging.getLogger("baton.worker")


class ReviewStage:
    """The review steps of one worker (a no-op for roles without review and tasks without a decision)."""

    def __init__(self, worker: Worker) -> None:
        self.worker = worker

    def park(self, done: Sequence[tuple[_Work, Generation]], finished: float) -> None:
        """Park each generated output for review: the run waits, nothing is handed off."""
        w = self.worker
        parks = [self._park(item, g, finished) for item, g in done]
        outcomes = w._ride_out_redis(
            lambda: park(w.client, w.keys, w.streams.group, w.consumer, parks, record_ttl_s=w.settings.record_ttl_s),
            "parking for review",
        )
        for p, o in zip(parks, outcomes, strict=True):
            with bind(run_id=p.task.run_id, msg_id=p.task.id):
                if o is Outcome.COMMITTED:
                    w.processed += 1
                    w.metrics.processed()
                    log.info("hop %d parked for human review %s", p.task.hop, p.review_id)
                elif o is Outcome.STALE:
                    log.warning("entry %s was reclaimed by another worker; discarded this result", p.entry.id)
                else:
                    log.info("entry %s had already been parked; acked the redelivery", p.entry.id)

    def _park(self, item: _Work, g: Generation, finished: float) -> Park:
        w = self.worker
        meta = w.meta(item, g.new_tokens, g.truncated, finished) | {"review": item.task.id}
        pad = (w.spec.agent, item.entry.id, w.pad_value(item, g.text, meta))
        return Park(entry=item.entry, task=item.task, role=w.spec.role, agent=w.spec.agent, output=g.text, pad=pad,
                    prompt=item.prompt, started=item.started, finished=finished, tokens=g.new_tokens)

    def resume(self, work: list[_Work]) -> list[_Work]:
        """Hand off (or end) the decided tasks of ``work``; return the others, to run as usual."""
        decided = [item for item in work if item.task.review is not None]
        if not decided:
            return work
        w, now = self.worker, time.time()
        flags = w._before_run(decided)  # cancelled flags (and memories, unused: no prompt is rendered)
        handoffs = [self._resume(item, cancelled, now) for item, cancelled in zip(decided, flags, strict=True)]
        outcomes = w._commit(handoffs)
        for item, o in zip(decided, outcomes, strict=True):
            if o is Outcome.COMMITTED:
                w.processed += 1
                w.metrics.processed()
                with bind(run_id=item.task.run_id, msg_id=item.task.id):
                    log.info("review %s decided: hop %d resumed", item.task.review.review_id if item.task.review
                             else "", item.task.hop)
        return [item for item in work if item.task.review is None]

    def _resume(self, item: _Work, cancelled: bool, now: float) -> Handoff:
        w, task, decision = self.worker, item.task, item.task.review
        assert decision is not None
        if cancelled:
            return w.guard.halt(item.entry, task, RunStatus.CANCELLED, "run cancelled", now)
        if task.deadline is not None and now > task.deadline:
            reason = (f"deadline passed {now - task.deadline:.1f}s before the review of role {w.spec.role!r} "
                      "was decided")
            return w.guard.halt(item.entry, task, RunStatus.FAILED, reason, now)
        if decision.decision != "approve":
            return w.guard.halt(item.entry, task, RunStatus.FAILED, decision.reason or "rejected by the reviewer", now)
        item.prompt, item.started, item.ctx = decision.prompt, decision.started, StepContext()
        handoff = w._handoff(item, decision.output, decision.tokens, False, now)
        return dataclasses.replace(handoff, pad=None)  # the scratchpad entry was written when it parked
