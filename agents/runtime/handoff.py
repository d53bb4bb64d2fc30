"""What one generated task commits: the next task (or the result), the scratchpad entry, the run
record and the run's hop events, as one ``Handoff`` for the atomic commit.

A role's :class:`HandoffBuilder` holds what every hop of the role shares (its spec, keys, steps
and consumer name), made once by the role's runtime; each hop hands it one :class:`HopOutput`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ...broker import Entry, Handoff, Keys, PadEntry, PadMeta
from ...broker.pads import encode_pad
from ...protocol import Hop, Result, RunStatus, Task, encode
from ..workflow.spec import RoleSpec
from .decisions import plan_decision
from .events import hop_events
from .outcome import FanOut, Finish
from .outcome import Handoff as HandTo
from .prompt import handoff_text
from .routing import needs_routing, plan_outputs
from .steps import RoleSteps, StepContext
from .tracing import hop_fields, use_hop

__all__ = ["HandoffBuilder", "HopOutput"]


@dataclass(frozen=True, slots=True)
class HopOutput:
    """What one hop produced: ``task`` (read as ``entry``) prompted with ``prompt`` from ``started``
    to ``finished`` gave ``output`` in ``tokens`` tokens. ``span`` is the hop's trace span (its
    context goes on to the next task); ``decision`` a code role's explicit ``Handoff``, ``FanOut``
    or ``Finish`` instead of the role's routing; ``notes`` its handler's ``ctx.scratchpad``."""

    entry: Entry
    task: Task
    output: str
    tokens: int
    started: float
    finished: float
    prompt: str = ""
    truncated: bool = False
    ctx: StepContext | None = None
    span: Any = None
    decision: object = None
    notes: dict[str, Any] | None = None
    counts: dict[str, int] | None = None
    """Run record fields the commit adds to (``Handoff.counts``): the hop's usage when it reserved none."""


@dataclass(frozen=True, slots=True)
class HandoffBuilder:
    """The commits of one role's hops: what its worker writes for each (see the module)."""

    spec: RoleSpec
    keys: Keys
    steps: RoleSteps
    consumer: str

    def meta(self, hop: HopOutput, *, review: str = "") -> PadMeta:
        """The hop's scratchpad ``meta``: who ran which message of which role when, its tokens, and
        the tool calls and fan-out part (nothing more for the seed chain); a code role's handler's
        own notes as ``meta.scratchpad``; the review its output waits for."""
        task = hop.task
        return PadMeta(msg_id=task.id, consumer=self.consumer, role=self.spec.role, hop=task.hop,
                       started=hop.started, finished=hop.finished, tokens=hop.tokens, truncated=hop.truncated,
                       scratchpad=hop.notes or {}, review=review, **self.steps.meta(task, hop.ctx))

    def pad(self, hop: HopOutput, *, review: str = "") -> tuple[str, str, bytes]:
        """The hop's scratchpad entry as the commit writes it: ``(agent, input entry id, value)``."""
        entry = PadEntry(task=hop.task.task, response=hop.output, meta=self.meta(hop, review=review))
        return self.spec.agent, hop.entry.id, encode_pad(entry)

    def build(self, hop: HopOutput) -> Handoff:
        """The commit of ``hop``: its next tasks (or result), scratchpad entry, record and events."""
        spec, keys, task, output = self.spec, self.keys, hop.task, hop.output
        h = Hop(role=spec.role, consumer=self.consumer, msg_id=task.id, started=hop.started, finished=hop.finished,
                tokens=hop.tokens)
        with use_hop(hop.span):  # parsed tool calls, shared
            fields = self.steps.after(task, hop.prompt, output, hop.ctx or StepContext())
        pad = self.pad(hop)
        carry = hop_fields(hop.span, task)
        common: dict[str, Any] = {"run_id": task.run_id, "parent_id": task.id, "hop": task.hop + 1,
                                  "trace": (*task.trace, h), "tenant": task.tenant}
        p = keys.partition(task.run_id)
        finished = hop.finished
        record: dict[str, str | float | int] = {"updated_at": finished, "hops": task.hop + 1}
        if isinstance(hop.decision, HandTo | FanOut | Finish):
            outputs, decided = plan_decision(hop.decision, task, keys, common, finished, carry)
            record |= decided
        elif needs_routing(spec, task):  # routes, fan-out, parts, richer handoff templates
            outputs, routed = plan_outputs(spec, task, output, fields, keys, common, finished, carry=carry)
            record |= routed
        elif spec.next:
            nxt = Task(role=spec.next, task=handoff_text(spec, output), workflow=task.workflow,
                       deadline=task.deadline, max_hops=task.max_hops, priority=task.priority, **carry, **common)
            stream = keys.run_stream(task.workflow, spec.next, task.run_id, task.priority, task.tenant)
            outputs = [(stream, encode(nxt))]
            record |= {"status": RunStatus.RUNNING, "role": spec.next}
        else:
            result = Result(role=spec.role, output=output, **common)
            outputs = [(keys.results(p), encode(result))]
            record |= {"status": RunStatus.DONE, "role": "", "result": output, "finished_at": finished}
        events = hop_events(spec, task, consumer=self.consumer, started=hop.started, finished=finished,
                            tokens=hop.tokens, output=output, record=record)
        return Handoff(entry=hop.entry, run_id=task.run_id, msg_id=task.id, outputs=outputs, pad=pad, record=record,
                       partition=p, events=events, counts=hop.counts or {})
