"""What one generated task commits: the next task (or the result), the scratchpad entry, the run
record and the run's hop events, as one ``Handoff`` for the atomic commit."""

from __future__ import annotations

from typing import Any

import msgspec

from baton.agents.runtime.events import hop_events
from baton.agents.runtime.prompt import handoff_text
from baton.agents.runtime.routing import needs_routing, plan_outputs
from baton.agents.runtime.steps import RoleSteps, StepContext
from baton.agents.workflow.spec import RoleSpec
from baton.broker import Entry, Handoff, Keys
from baton.protocol import Hop, Result, Task, encode

__all__ = ["build_handoff"]

_JSON = msgspec.json.Encoder()  # one encoder for every scratchpad entry (faster than json.dumps)


def build_handoff(
    spec: RoleSpec, keys: Keys, steps: RoleSteps, consumer: str, *, entry: Entry, task: Task, prompt: str,
    ctx: StepContext | None, started: float, output: str, tokens: int, truncated: bool, finished: float,
) -> Handoff:
    """The commit of ``task``'s hop, whose model ``output`` took ``tokens`` tokens."""
    hop = Hop(role=spec.role, consumer=consumer, msg_id=task.id, started=started, finished=finished, tokens=tokens)
    meta: dict[str, Any] = {"msg_id": task.id, "consumer": consumer, "hop": task.hop, "started": started,
                            "finished": finished, "tokens": tokens, "truncated": truncated}
    fields = steps.after(task, prompt, output, ctx or StepContext())  # parsed tool calls, shared
    meta |= steps.meta(task, ctx)  # tool calls and results, fan-out part (nothing for the seed)
    pad_value = _JSON.encode({"task": task.task, "response": output, "meta": meta})
    common: dict[str, Any] = {"run_id": task.run_id, "parent_id": task.id, "hop": task.hop + 1,
                              "trace": (*task.trace, hop)}
    p = keys.partition(task.run_id)
    record: dict[str, str | float | int] = {"updated_at": finished, "hops": task.hop + 1}
    if needs_routing(spec, task):  # routes, fan-out, parts, richer handoff templates
        outputs, routed = plan_outputs(spec, task, output, fields, keys, common, finished)
        record |= routed
    elif spec.next:
        nxt = Task(role=spec.next, task=handoff_text(spec, output), workflow=task.workflow,
                   deadline=task.deadline, max_hops=task.max_hops, **common)
        outputs = [(keys.run_stream(task.workflow, spec.next, task.run_id), encode(nxt))]
        record |= {"status": "running", "role": spec.next}
    else:
        result = Result(role=spec.role, output=output, **common)
        outputs = [(keys.results(p), encode(result))]
        record |= {"status": "done", "role": "", "result": output, "finished_at": finished}
    events = hop_events(spec, task, consumer=consumer, started=started, finished=finished, tokens=tokens,
                        output=output, record=record)
    return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id, outputs=outputs,
                   pad=(spec.agent, entry.id, pad_value), record=record, partition=p, events=events)
