"""What one generated task commits: the next task (or the result), the scratchpad entry, the run
record and the run's hop events, as one ``Handoff`` for the atomic commit."""

from __future__ import annotations

from typing import Any

import msgspec

from baton.agents.runtime.decisions import plan_decision
from baton.agents.runtime.events import hop_events
from baton.agents.runtime.outcome import FanOut, Finish
from baton.agents.runtime.outcome import Handoff as HandTo
from baton.agents.runtime.prompt import handoff_text
from baton.agents.runtime.routing import needs_routing, plan_outputs
from baton.agents.runtime.steps import RoleSteps, StepContext
from baton.agents.runtime.tracing import hop_fields, use_hop
from baton.agents.workflow.spec import RoleSpec
from baton.broker import Entry, Handoff, Keys
from baton.protocol import Hop, Result, RunStatus, Task, encode

__all__ = ["build_handoff", "hop_meta", "pad_entry"]

_JSON = msgspec.json.Encoder()  # one encoder for every scratchpad entry (faster than json.dumps)


def hop_meta(spec: RoleSpec, steps: RoleSteps, consumer: str, task: Task, ctx: StepContext | None, *,
             started: float, finished: float, tokens: int, truncated: bool,
             notes: dict[str, Any] | None = None) -> dict[str, Any]:
    """A hop's scratchpad ``meta``: who ran which message of which role when, its tokens, and the
    tool calls and fan-out part (nothing more for the seed chain); a code role's handler's own
    notes (``ctx.scratchpad``) as ``meta.scratchpad``."""
    meta = {"msg_id": task.id, "consumer": consumer, "role": spec.role, "hop": task.hop, "started": started,
            "finished": finished, "tokens": tokens, "truncated": truncated, **steps.meta(task, ctx)}
    if notes:
        meta["scratchpad"] = notes
    return meta


def pad_entry(task: Task, output: str, meta: dict[str, Any]) -> bytes:
    """The scratchpad entry of a hop: its input task, the response and ``meta``."""
    return _JSON.encode({"task": task.task, "response": output, "meta": meta})


def build_handoff(
    spec: RoleSpec, keys: Keys, steps: RoleSteps, consumer: str, *, entry: Entry, task: Task, prompt: str,
    ctx: StepContext | None, started: float, output: str, tokens: int, truncated: bool, finished: float,
    span: Any = None, decision: object = None, notes: dict[str, Any] | None = None,
    counts: dict[str, int] | None = None,
) -> Handoff:
    """The commit of ``task``'s hop, whose model ``output`` took ``tokens`` tokens; ``span`` is the
    hop's trace span (its context goes on to the next task). ``decision``: a code role's explicit
    ``Handoff``, ``FanOut`` or ``Finish`` (``decisions.plan_decision``) instead of the role's routing.
    ``counts``: run record fields the commit adds to (``Handoff.counts``)."""
    hop = Hop(role=spec.role, consumer=consumer, msg_id=task.id, started=started, finished=finished, tokens=tokens)
    with use_hop(span):
        fields = steps.after(task, prompt, output, ctx or StepContext())  # parsed tool calls, shared
    meta = hop_meta(spec, steps, consumer, task, ctx, started=started, finished=finished, tokens=tokens,
                    truncated=truncated, notes=notes)
    pad_value = pad_entry(task, output, meta)
    carry = hop_fields(span, task)
    common: dict[str, Any] = {"run_id": task.run_id, "parent_id": task.id, "hop": task.hop + 1,
                              "trace": (*task.trace, hop), "tenant": task.tenant}
    p = keys.partition(task.run_id)
    record: dict[str, str | float | int] = {"updated_at": finished, "hops": task.hop + 1}
    if isinstance(decision, HandTo | FanOut | Finish):
        outputs, decided = plan_decision(decision, task, keys, common, finished, carry)
        record |= decided
    elif needs_routing(spec, task):  # routes, fan-out, parts, richer handoff templates
        outputs, routed = plan_outputs(spec, task, output, fields, keys, common, finished, carry=carry)
        record |= routed
    elif spec.next:
        nxt = Task(role=spec.next, task=handoff_text(spec, output), workflow=task.workflow,
                   deadline=task.deadline, max_hops=task.max_hops, priority=task.priority, **carry, **common)
        outputs = [(keys.run_stream(task.workflow, spec.next, task.run_id, task.priority), encode(nxt))]
        record |= {"status": RunStatus.RUNNING, "role": spec.next}
    else:
        result = Result(role=spec.role, output=output, **common)
        outputs = [(keys.results(p), encode(result))]
        record |= {"status": RunStatus.DONE, "role": "", "result": output, "finished_at": finished}
    events = hop_events(spec, task, consumer=consumer, started=started, finished=finished, tokens=tokens,
                        output=output, record=record)
    return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id, outputs=outputs,
                   pad=(spec.agent, entry.id, pad_value), record=record, partition=p, events=events,
                   counts=counts or {})
