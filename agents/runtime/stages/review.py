"""The review stages: park a reviewed role's output; hand off a decided one.

A role with ``review = "human"`` parks each generated output (``Park``; ``broker.reviews.park``: one
atomic step) instead of handing it off. ``baton review approve`` publishes a continuation of the
parked task (``Task.review`` set) on the role's stream; ``Resume`` hands the decided output off
exactly as a normal hop would (routes, fan-out, shared memory, the next task or the result),
without calling the model and without a second scratchpad entry. The decision, the output and
the task itself are read from the review record that ``decide`` wrote in the step that published
the continuation (``broker.reviews.continuations``), never from the entry: a forged or replayed
decision is dead-lettered with the reason and its run left as it is; on a role without review it is
dead-lettered unread (that role's ACL user may not read the review keys). A decision that arrives after
the run's deadline fails the run with that reason; a cancelled run stays cancelled.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable

from ....broker import Handoff, Outcome
from ....broker.reviews import Park as Parked
from ....broker.reviews import continuations, park
from ....protocol import RunStatus, Task
from ...backends import Generation
from ..admission import dead_letter
from ..handoff import HopOutput
from ..logs import bind
from ..role import RoleRuntime
from ..steps import StepContext
from ..work import Batch, Commit, WorkItem
from .guard import read_flags

__all__ = ["Park", "Resume"]

log = logging.getLogger("baton.worker")


class Resume:
    """Decided tasks leave ``batch.work``: their handoff (or their run's end) goes to the commit."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        claimed = [item for item in batch.work if item.task.review is not None]
        if not claimed:
            return
        batch.work = [item for item in batch.work if item.task.review is None]
        rt = self.rt
        trusted: list[Task | str]
        if rt.spec.review:
            trusted = rt.ride_out_redis(lambda: continuations(rt.client, rt.keys, [i.task for i in claimed]),
                                        "reading reviews")
        else:  # nothing of this role is ever reviewed (nor may its ACL user read reviews): forged
            trusted = [f"role {rt.spec.role!r} has no review: the entry's decision was not made by `decide`"
                       for _ in claimed]
        decided: list[WorkItem] = []
        for item, got in zip(claimed, trusted, strict=True):
            if isinstance(got, str):
                dead = dead_letter(rt.keys, rt.spec.role, item.entry, got, item.task, rt.partition(item.entry),
                                   fail_run=False)
                batch.commits.append(Commit(dead, self._dead_lettered))
            else:
                item.task = got
                decided.append(item)
        if not decided:
            return
        now = time.time()
        flags = read_flags(self.rt, decided)  # cancelled flags (memories unused: no prompt is rendered)
        for item, cancelled in zip(decided, flags, strict=True):
            batch.commits.append(Commit(self._resume(item, cancelled, now), self._resumed(item)))

    def _dead_lettered(self, _: Outcome) -> None:
        self.rt.counts.dead_lettered += 1
        self.rt.metrics.dead_lettered(1)

    def _resume(self, item: WorkItem, cancelled: bool, now: float) -> Handoff:
        rt, task, decision = self.rt, item.task, item.task.review
        assert decision is not None
        if cancelled:
            return rt.guard.halt(item.entry, task, RunStatus.CANCELLED, "run cancelled", now)
        if task.deadline is not None and now > task.deadline:
            reason = (f"deadline passed {now - task.deadline:.1f}s before the review of role {rt.spec.role!r} "
                      "was decided")
            return rt.guard.halt(item.entry, task, RunStatus.FAILED, reason, now)
        if decision.decision != "approve":
            return rt.guard.halt(item.entry, task, RunStatus.FAILED, decision.reason or "rejected by the reviewer",
                                 now)
        handoff = rt.handoffs.build(HopOutput(item.entry, task, decision.output, decision.tokens, decision.started,
                                              now, prompt=decision.prompt, ctx=StepContext(), span=item.span))
        return dataclasses.replace(handoff, pad=None)  # the scratchpad entry was written when it parked

    def _resumed(self, item: WorkItem) -> Callable[[Outcome], None]:
        def then(outcome: Outcome) -> None:
            if outcome is Outcome.COMMITTED:
                self.rt.counts.processed += 1
                self.rt.metrics.processed()
                review = item.task.review
                with bind(run_id=item.task.run_id, msg_id=item.task.id):
                    log.info("review %s decided: hop %d resumed", review.review_id if review else "", item.task.hop)
        return then


class Park:
    """For a role with review: each generated output is parked (the run waits); the hand-off stage
    hands off nothing for such a role."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        if not rt.spec.review or not batch.done:
            return
        finished = time.time()
        parks = [self._park(item, g, finished) for item, g in batch.done]
        rt.events.flush()  # the hops' last tokens go before their review_requested
        outcomes = rt.ride_out_redis(
            lambda: park(rt.committer, parks),
            "parking for review",
        )
        for p, o in zip(parks, outcomes, strict=True):
            with bind(run_id=p.task.run_id, msg_id=p.task.id):
                if o is Outcome.COMMITTED:
                    rt.counts.processed += 1
                    rt.metrics.processed()
                    log.info("hop %d parked for human review %s", p.task.hop, p.review_id)
                elif o is Outcome.STALE:
                    log.warning("entry %s was reclaimed by another worker; discarded this result", p.entry.id)
                else:
                    log.info("entry %s had already been parked; acked the redelivery", p.entry.id)

    def _park(self, item: WorkItem, g: Generation, finished: float) -> Parked:
        rt = self.rt
        hop = HopOutput(item.entry, item.task, g.text, g.new_tokens, item.started, finished,
                        truncated=g.truncated, ctx=item.ctx, notes=item.notes)
        pad = rt.handoffs.pad(hop, review=item.task.id)
        return Parked(entry=item.entry, task=item.task, role=rt.spec.role, agent=rt.spec.agent, output=g.text,
                      pad=pad, prompt=item.prompt, started=item.started, finished=finished, tokens=g.new_tokens)
