"""A role's stages and the pipeline that runs them, in order, over a batch.

    before:  admit -> resume (review) -> guard -> gather -> prepare -> quota (tenant) -> reserve (budget)
    work:    generate (a template role's model call) | handle (a code role's handler)
    after:   settle (budget) -> usage (tenant) -> park waits (code roles) -> park (review) -> hand off -> reject
             -> retry later -> commit

``Worker`` runs the whole list over each batch it reads. ``MultiRoleWorker`` runs each role's
``before`` stages, makes one model call for the prompts of every role sharing a model in place
of each role's ``work`` stage, then runs each role's ``after`` stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..role import RoleRuntime
from ..work import Batch, Stage
from .admit import Admit
from .budget import Reserve, Settle
from .commit import CommitAll
from .gather import Gather
from .generate import Generate
from .guard import Guard
from .hand_off import HandOff
from .prepare import Prepare
from .reject import Reject, RetryLater
from .review import Park, Resume
from .tenant import TenantQuota, TenantUsage

if TYPE_CHECKING:
    from .handle import HandlerRunner

__all__ = ["Pipeline", "code_pipeline", "pipeline_for", "template_pipeline"]


@dataclass(frozen=True, slots=True)
class Pipeline:
    """The stages of one role: those before its work, the work stage, and those after it."""

    before: Sequence[Stage]
    work: Stage
    after: Sequence[Stage]

    def run(self, batch: Batch) -> Batch:
        """Every stage over ``batch``, in order."""
        self.run_before(batch)
        self.work(batch)
        self.run_after(batch)
        return batch

    def run_before(self, batch: Batch) -> None:
        """The stages up to the work: what runs, with its prompt, reserved."""
        for stage in self.before:
            stage(batch)

    def run_after(self, batch: Batch) -> None:
        """The stages after the work: accounting, handoffs, dead letters, retries, the commit."""
        for stage in self.after:
            stage(batch)


def template_pipeline(rt: RoleRuntime) -> Pipeline:
    """The pipeline of a template role (a prompt template over the role's model)."""
    return Pipeline(
        before=(Admit(rt), Resume(rt), Guard(rt), Gather(rt), Prepare(rt), TenantQuota(rt), Reserve(rt)),
        work=Generate(rt),
        after=(Settle(rt), TenantUsage(rt), Park(rt), HandOff(rt), Reject(rt), RetryLater(rt), CommitAll(rt)),
    )


def code_pipeline(rt: RoleRuntime, runner: HandlerRunner) -> Pipeline:
    """The pipeline of a code role: its handler (``runner``) in the work slot; no prompt is rendered
    and budgets are reserved per model call (the gateway), not per hop."""
    from .handle import Handle  # only code roles load the gateway
    from .wait import ParkWaits

    return Pipeline(
        before=(Admit(rt), Resume(rt), Guard(rt), Gather(rt), Prepare(rt, render=False),
                TenantQuota(rt, rate_limits=False)),
        work=Handle(rt, runner),
        after=(TenantUsage(rt), ParkWaits(rt), Park(rt), HandOff(rt), Reject(rt), RetryLater(rt), CommitAll(rt)),
    )


def pipeline_for(rt: RoleRuntime, runner: HandlerRunner | None = None) -> Pipeline:
    """The role's pipeline: a code role's (it names a ``handler``) with ``runner``, else a template role's."""
    if getattr(rt.spec, "handler", ""):
        if runner is None:
            raise ValueError(f"role {rt.spec.role!r} is a code role: its worker needs a handler runner (--app)")
        return code_pipeline(rt, runner)
    return template_pipeline(rt)
