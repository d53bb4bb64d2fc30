"""A role's stages and the pipeline that runs them, in order, over a batch.

    before:  admit -> resume (review) -> guard -> gather -> prepare -> reserve (budget)
    work:    generate (a template role's model call) | handle (a code role's handler)
    after:   settle (budget) -> park (review) -> hand off -> reject -> retry later -> commit

``Worker`` runs the whole list over each batch it reads. ``MultiRoleWorker`` runs each role's
``before`` stages, makes one model call for the prompts of every role sharing a model in place
of each role's ``work`` stage, then runs each role's ``after`` stages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from baton.agents.runtime.role import RoleRuntime
from baton.agents.runtime.stages.admit import Admit
from baton.agents.runtime.stages.budget import Reserve, Settle
from baton.agents.runtime.stages.commit import CommitAll
from baton.agents.runtime.stages.gather import Gather
from baton.agents.runtime.stages.generate import Generate
from baton.agents.runtime.stages.guard import Guard
from baton.agents.runtime.stages.hand_off import HandOff
from baton.agents.runtime.stages.prepare import Prepare
from baton.agents.runtime.stages.reject import Reject, RetryLater
from baton.agents.runtime.stages.review import Park, Resume
from baton.agents.runtime.work import Batch, Stage

__all__ = ["Pipeline", "template_pipeline"]


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
        before=(Admit(rt), Resume(rt), Guard(rt), Gather(rt), Prepare(rt), Reserve(rt)),
        work=Generate(rt),
        after=(Settle(rt), Park(rt), HandOff(rt), Reject(rt), RetryLater(rt), CommitAll(rt)),
    )
