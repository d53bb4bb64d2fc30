"""What a role does around its model call beyond the seed chain; the worker's hooks call this.

Before the call: the declared tool steps run (results in ``{tools}``), the run's shared
memory is read (``{shared}``) and its thread's earlier turns (``{history}``). Each tool call writes
``tool_call`` and ``tool_result`` run events (best effort). After it: tool calls written in the
model's output are run when the role sets ``parse_tools``, the role's ``share`` fields are written to shared memory, the
agent's long-term memory gets the entry (``memory = "agent"``), and the template fields of the
handoff are assembled for ``baton.agents.runtime.routing``. For a role with none of these (the seed chain)
nothing here touches Redis and the prompt is exactly ``baton.agents.runtime.prompt.render_prompt``'s.

Delivery is at least once: a message redelivered after a crash runs its tool calls again, so
tools should tolerate repeats. Each tool call counts against the run's
``max_tool_calls`` (``baton.broker.budget``); a refused tool step fails the hop before its
model call. Shared-memory and long-term-memory writes are idempotent (the
same field, or a field keyed by the message id).
"""

from __future__ import annotations

import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...broker import Keys, Redis
from ...broker.budget import count_tool_call
from ...broker.memory import agent_memory, read_shared, remember, write_shared
from ...broker.pads import Memory, PadBatch, PadTool
from ...broker.threads import run_history
from ...protocol import KEY_SAFE_PATTERN, MAX_NAME_LENGTH, Task, ToolCalled, ToolReturned
from ...protocol.threads import render_history
from ..tools.runner import ToolOutcome, ToolRunner, render_outcomes
from ..tools.syntax import parse_calls
from ..workflow.spec import RoleSpec, Workflow
from .events import EventWriter
from .prompt import render_memory, render_prompt
from .routing import continuation

__all__ = ["RoleSteps", "StepContext", "render_shared"]


@dataclass(slots=True)
class StepContext:
    """Per-task state between the hooks: tool outcomes and the shared memory as read."""

    outcomes: list[ToolOutcome] = field(default_factory=list)
    shared: dict[str, str] = field(default_factory=dict)
    budget_exceeded: str = ""  # a tool step the run's budget refused: the hop fails with this reason
    batch: PadBatch | None = None  # a cross-role model call's roles and size (multirole)
    history: str = ""  # the run's thread's earlier turns, for ``{history}``

    def tool_log(self) -> list[PadTool]:
        """Every tool call and result, for the scratchpad entry's ``meta.tools``."""
        return [o.as_call() for o in self.outcomes]


REFUSED_BY_BUDGET = "budget"
"""``ToolOutcome.where`` of a tool call the run's budget refused (its ``error`` is the reason)."""
_TOOL_NAME = re.compile(KEY_SAFE_PATTERN)
_EXTRA = frozenset({"tools", "shared", "part", "parts", "run_id", "history"})


def render_shared(shared: Mapping[str, str]) -> str:
    """The ``{shared}`` template text: ``field: value`` lines, fields sorted."""
    return "\n".join(f"{k}: {v}" for k, v in sorted(shared.items()))


def _valid_tool(tool: str) -> bool:
    """Whether ``tool`` can name a tool in an event (a model may write any text as a tool name)."""
    return bool(_TOOL_NAME.match(tool)) and len(tool) <= MAX_NAME_LENGTH


def _part_fields(task: Task) -> dict[str, str]:
    return {"part": str(task.part + 1), "parts": str(task.parts), "run_id": task.run_id}


class RoleSteps:
    """The hooks of one role of ``workflow``."""

    def __init__(self, client: Redis | None, keys: Keys, workflow: Workflow, spec: RoleSpec,
                 *, events: EventWriter | None = None) -> None:
        self.client = client
        self.keys = keys
        self.spec = spec
        self.events = events
        self.tools = ToolRunner(client, keys, workflow, spec) if spec.tools else None
        self._extra_fields = _EXTRA & {name for _, name, _, _ in string.Formatter().parse(spec.prompt) if name}

    @property
    def reads_shared(self) -> bool:
        """Whether the prompt shows the run's shared memory."""
        return "{shared}" in self.spec.prompt

    def memories(self, tasks: Sequence[Task]) -> list[list[Memory]] | None:
        """Long-term memory for ``memory = "agent"`` roles; ``None`` means: the worker's default."""
        if self.spec.memory != "agent" or self.client is None:
            return None
        entries: list[Memory] = [*agent_memory(self.client, self.keys, self.spec.agent, self.spec.memory_window)]
        return [entries for _ in tasks]

    def before(self, task: Task) -> StepContext:
        """Run the declared tool steps and read shared memory for ``task``."""
        ctx = StepContext()
        if self.tools is not None:
            values = {"task": task.task, "agent": self.spec.agent, "role": self.spec.role, **_part_fields(task)}
            for step in self.spec.steps:
                args = {k: v.format_map(values) for k, v in step.args.items()}
                ctx.outcomes.append(self._call(step.tool, args, task))
                if ctx.outcomes[-1].where == REFUSED_BY_BUDGET:
                    ctx.budget_exceeded = ctx.outcomes[-1].error
                    break
        if self.reads_shared and self.client is not None:
            ctx.shared = read_shared(self.client, self.keys, task.run_id)
        if "history" in self._extra_fields and self.client is not None:
            ctx.history = render_history(run_history(self.client, self.keys, task.run_id))
        return ctx

    def render(self, task: Task, memory: Sequence[Memory], ctx: StepContext) -> str:
        """The prompt: the seed's rendering, plus ``{tools}``, ``{shared}``, ``{part}``... when used."""
        if not self._extra_fields:
            return render_prompt(self.spec, task.task, memory)
        return self.spec.prompt.format_map({
            "title": self.spec.display, "role": self.spec.role, "agent": self.spec.agent, "task": task.task,
            "memory": render_memory(memory, self.spec.memory_window) if self.spec.memory != "none" else "[]",
            "tools": render_outcomes(ctx.outcomes), "shared": render_shared(ctx.shared), **_part_fields(task),
            "history": ctx.history,
        })

    def meta(self, task: Task, ctx: StepContext | None) -> dict[str, Any]:
        """Extra scratchpad ``meta`` (``PadMeta`` fields): every tool call and result, the cross-role
        batch, the fan-out part; empty for the seed."""
        extra: dict[str, Any] = {}
        if ctx is not None and ctx.outcomes:
            extra["tools"] = ctx.tool_log()
        if ctx is not None and ctx.batch:
            extra["batch"] = ctx.batch
        if task.parts > 1:
            extra |= {"part": task.part, "parts": task.parts, "group": task.group}
        return extra

    def after(self, task: Task, prompt: str, output: str, ctx: StepContext) -> dict[str, str]:
        """Post-generation steps; return the handoff template fields (route sources included)."""
        generated = continuation(prompt, output)
        if self.spec.parse_tools and self.tools is not None:
            for call in parse_calls(generated):
                ctx.outcomes.append(self._call(call.tool, call.args, task))
        fields = {"output": output, "continuation": generated, "tools": render_outcomes(ctx.outcomes),
                  "task": task.task, "agent": self.spec.agent, "role": self.spec.role, **_part_fields(task)}
        if self.client is not None:
            if self.spec.share:
                values = {k.format_map(fields): v.format_map(fields) for k, v in self.spec.share.items()}
                write_shared(self.client, self.keys, task.run_id, values)
            if self.spec.memory == "agent":
                remember(self.client, self.keys, self.spec.agent, task.id, task.task, output)
        return fields

    def call_tool(self, tool: str, args: Mapping[str, Any], task: Task) -> ToolOutcome:
        """One tool call of a code role's handler for ``task`` (the run's tool budget, the role's
        allow-list, ``tool_call``/``tool_result`` events); errors are in the outcome."""
        if self.tools is None:
            return ToolOutcome(tool, dict(args), error=f"role {self.spec.role!r} may call no tools (set its tools)",
                               where="refused")
        return self._call(tool, args, task)

    def _call(self, tool: str, args: Mapping[str, Any], task: Task) -> ToolOutcome:
        """Run one tool call, with its ``tool_call`` and ``tool_result`` events (best effort)."""
        assert self.tools is not None
        if self.client is not None and (refused := count_tool_call(self.client, self.keys, task.run_id,
                                                                   self.spec.role)):
            return ToolOutcome(tool, args, error=refused, where=REFUSED_BY_BUDGET)
        common: dict[str, Any] = {"run_id": task.run_id, "role": self.spec.role, "agent": self.spec.agent,
                                  "hop": task.hop, "msg_id": task.id}
        if self.events is not None and _valid_tool(tool):
            self.events.emit([ToolCalled(**common, tool=tool, args=dict(args))])
        outcome = self.tools.call(tool, args, task.run_id)
        if self.events is not None and _valid_tool(tool):
            self.events.emit([ToolReturned(**common, tool=tool, output=outcome.output, error=outcome.error)])
        return outcome

    def close(self) -> None:
        """Release the tool runner's threads."""
        if self.tools is not None:
            self.tools.close()

