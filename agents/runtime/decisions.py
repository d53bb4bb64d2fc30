"""Where a code role's explicit outcome sends its work: the messages and run-record fields of
``Handoff`` (one task to any role), ``FanOut`` (parts to a role's pool, gathered by its ``join``
role) and ``Finish`` (the run's result). ``Next`` goes through the role's own routing
(``routing.plan_outputs``) like a template role's output; ``Fail`` is a dead letter."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ...broker import Keys
from ...protocol import Result, RunStatus, Task, encode
from ..workflow.spec import Workflow
from .outcome import FanOut, Finish, Handoff, Outcome
from .routing import PART_SEPARATOR

__all__ = ["check_decision", "decided_output", "plan_decision"]


def check_decision(workflow: Workflow, decision: Outcome) -> str:
    """Why ``decision`` cannot be carried out (a role the workflow does not have), or ``''``."""
    if isinstance(decision, Handoff | FanOut) and decision.role not in {r.role for r in workflow.roles}:
        return f"handler chose role {decision.role!r}, which workflow {workflow.name!r} does not have"
    return ""


def decided_output(decision: Outcome) -> str:
    """The hop's output as its scratchpad entry and events show it."""
    match decision:
        case Finish(result=result):
            return result
        case Handoff(task=task):
            return task
        case FanOut(tasks=tasks):
            return PART_SEPARATOR.join(tasks)
    return getattr(decision, "text", "")


def plan_decision(decision: Handoff | FanOut | Finish, task: Task, keys: Keys, common: Mapping[str, Any],
                  finished: float, carry: Mapping[str, str]) -> tuple[list[tuple[str, bytes]],
                                                                      dict[str, str | float | int]]:
    """The ``(stream, payload)`` outputs and run-record fields of an explicit outcome."""
    if isinstance(decision, Finish):
        result = Result(role=task.role, output=decision.result, **common)
        return [(keys.results(keys.partition(task.run_id)), encode(result))], {
            "status": RunStatus.DONE, "role": "", "result": decision.result, "finished_at": finished}
    base: dict[str, Any] = {"role": decision.role, "workflow": task.workflow, "deadline": task.deadline,
                            "max_hops": task.max_hops, "priority": task.priority, **carry}
    stream = keys.run_stream(task.workflow, decision.role, task.run_id, task.priority, task.tenant)
    if isinstance(decision, Handoff):
        nxt = Task(task=decision.task, **base, **common)
        return [(stream, encode(nxt))], {"status": RunStatus.RUNNING, "role": decision.role}
    n = len(decision.tasks)
    outputs = [(stream, encode(Task(task=text, part=i, parts=n, group=task.id, **base, **common)))
               for i, text in enumerate(decision.tasks)]
    return outputs, {"status": RunStatus.RUNNING, "role": decision.role}
