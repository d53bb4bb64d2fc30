"""Roles and the routing between them, as data. The seed notebook's chain is the default.

A ``Workflow`` is a list of ``RoleSpec`` s: who the agent is, how its prompt is built, which
role gets its output next and with what handoff text. The defaults reproduce the notebook:
``f"{role} agent named {name}. Task: {task}\\nMemory: {memory[-3:]}\\nResponse:"``.

What is valid is said in the Structs' types where a type can say it (``Literal`` choices,
``Meta`` bounds, key-safe names from ``protocol/fields.py``): decoding a workflow file enforces
them and ``baton schema --workflow`` shows them. ``Workflow.__post_init__`` checks what spans
fields: declared roles, templates, routes, fan-out with fan-in.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Literal

import msgspec

from ...protocol import DEFAULT_THREAD_POLICY, DEFAULT_WORKFLOW, Budget, ThreadPolicy
from ...protocol.fields import Count, MaybeName, Name, PartCount, ToolTimeout

__all__ = [
    "HANDLER_PATTERN",
    "SEED",
    "SEED_PROMPT",
    "MCPServerSpec",
    "RoleSpec",
    "Route",
    "Split",
    "ToolConfig",
    "ToolStep",
    "Workflow",
    "WorkflowError",
]

_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
HANDLER_PATTERN = f"^$|^{_DOTTED}:{_DOTTED}$"
HandlerRef = Annotated[str, msgspec.Meta(pattern=HANDLER_PATTERN, max_length=400,
                                         description="A Python handler as 'pkg.module:function'.")]

SEED_PROMPT = "{title} agent named {agent}. Task: {task}\nMemory: {memory}\nResponse:"

PROMPT_FIELDS = frozenset({"title", "agent", "role", "task", "memory", "tools", "shared", "part", "parts", "run_id",
                           "history"})
OUTPUT_FIELDS = frozenset({"output", "continuation", "tools", "task", "part", "parts", "agent", "role", "run_id"})
STEP_FIELDS = frozenset({"task", "part", "parts", "agent", "role", "run_id"})
SplitRule = Literal["lines", "sentences", "chunks", "copies"]
SplitFallback = Literal["chunks", "copies"]
RouteSource = Literal["output", "continuation", "tools"]
Memory = Literal["run", "agent", "none"]
ReviewMode = Literal["", "human"]
END = "end"
"""A route target that finishes the run (the role's output becomes the result)."""


class WorkflowError(ValueError):
    """A workflow that cannot be used; the message says what to fix."""


class ToolStep(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A tool call a role makes before prompting; its result is the prompt's ``{tools}``.

    ``args`` values are templates over ``{task}``, ``{part}``, ``{parts}``, ``{agent}``,
    ``{role}`` and ``{run_id}``.
    """

    tool: Name
    args: dict[str, str] = {}


class Split(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Fan-out: split a role's generated text into ``count`` subtasks for the next role.

    ``by``: ``lines`` (numbered or bulleted lines), ``sentences``, ``chunks`` (``count`` runs of
    words of near-equal length) or ``copies`` (``count`` copies; label them with ``{part}`` in
    the handoff). When the rule finds fewer than ``count`` items (the tiny model writes no
    structure) the ``fallback`` (``chunks`` or ``copies``) is used; extra items are dropped.
    """

    by: SplitRule = "lines"
    count: PartCount = 3
    fallback: SplitFallback = "copies"


class Route(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Conditional routing: go to role ``to`` (or ``"end"``) when regex ``when`` matches ``source``.

    ``source``: ``output`` (prompt and continuation), ``continuation`` (generated text only) or
    ``tools`` (the text of the role's tool results). Routes are tried in order; ``next`` is the
    default when none matches.
    """

    to: Name
    when: str
    source: RouteSource = "output"


class ToolConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """How a workflow runs one tool: inline or on a tool worker pool, its timeout, its options."""

    remote: bool = False
    timeout: ToolTimeout = 10.0
    options: dict[str, str] = {}


class MCPServerSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An MCP tool server (``[mcp.NAME]``), whose tools become baton tools named ``NAME.TOOL``.

    Either a stdio server, started by baton as ``command`` with ``args`` (and ``env`` over a minimal
    environment, in ``cwd``, relative to the workflow file's directory), or a Streamable HTTP
    server at ``url`` (``http(s)://.../mcp``). ``timeout``: seconds to connect or to answer a call.
    """

    command: str = ""
    args: list[str] = []
    env: dict[str, str] = {}
    cwd: str = ""
    url: str = ""
    timeout: ToolTimeout = 30.0

    def __post_init__(self) -> None:
        if bool(self.command) == bool(self.url):
            raise WorkflowError("an MCP server needs either command (stdio) or url (Streamable HTTP), not both")
        if self.url and not self.url.startswith(("http://", "https://")):
            raise WorkflowError(f"MCP server url {self.url!r} must start with http:// or https://")


def _template_fields(template: str, allowed: frozenset[str], where: str) -> None:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError as exc:
        raise WorkflowError(f"{where}: bad template {template!r}: {exc}") from None
    for _, name, _, _ in parsed:
        if name is None:
            continue
        base = re.split(r"[.\[]", name, maxsplit=1)[0]
        if base not in allowed:
            known = ", ".join("{" + f + "}" for f in sorted(allowed))
            raise WorkflowError(f"{where}: template field {{{name}}} is unknown; use {known}")


class RoleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One role: its agent, prompt template, and where its output goes.

    ``prompt`` may use ``{title}``, ``{agent}``, ``{role}``, ``{task}`` and ``{memory}``
    (the agent's last ``memory_window`` scratchpad entries rendered as the notebook does).
    ``handoff`` builds the next role's task from ``{output}``; an empty ``next`` ends the run.

    Beyond the seed chain (all optional, see the README's "Workflows, tools and memory"):
    ``tools`` is the role's tool allow-list, ``steps`` are tool calls made before prompting
    (results in ``{tools}``), ``parse_tools`` runs tool calls written in the model's output,
    ``split`` fans the output out to the next role's pool, ``join`` gathers all parts of a
    fan-out into one task, ``routes`` choose the next role by a pattern, and ``share`` writes
    templated fields to the run's shared memory (``{shared}`` in prompts). ``{history}`` in a prompt is
    the earlier turns of the run's thread (``User:``/``Assistant:`` lines; empty for a run of no thread).
    ``memory = "agent"`` keeps the agent's memory across runs. ``review = "human"`` parks the run with the role's output
    until a person approves (maybe edits) or rejects it (``baton review``). ``rpm`` / ``tpm`` limit
    the requests (prompts) and tokens per minute of the role's model, shared with every worker calling
    that model (0: ``BATON_MODEL_RPM`` / ``BATON_MODEL_TPM``; see OPERATIONS.md, "Rate limits").

    ``handler = "pkg.module:function"`` makes the role a code role: the function
    ``(ctx: baton.Context, task: str) -> str | Outcome`` runs instead of the prompt template
    (README, "Write your own agents"); ``timeout`` bounds one run of it (0: no limit) and
    ``max_tool_rounds`` its model's tool-call rounds per ``ctx.chat``. Routes, fan-out and fan-in,
    review, budgets, priority and memory modes apply to code roles as to template roles.
    """

    role: Name
    agent: Name
    title: str = ""
    prompt: str = SEED_PROMPT
    next: MaybeName = ""
    handoff: str = "{output}"
    model: str = ""
    max_new_tokens: Count = 0
    memory: Memory = "run"
    memory_window: Count = 3
    tools: list[Name] = []
    steps: list[ToolStep] = []
    parse_tools: bool = False
    split: Split | None = None
    join: bool = False
    routes: list[Route] = []
    share: dict[str, str] = {}
    review: ReviewMode = ""
    rpm: Count = 0
    tpm: Count = 0
    max_backlog: Annotated[int, msgspec.Meta(ge=0)] | None = None
    """Of the entry role: submits are refused while it is this many tasks behind (0: no limit;
    unset: ``BATON_MAX_BACKLOG``). See ``broker/backpressure.py``."""
    handler: HandlerRef = ""
    timeout: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    max_tool_rounds: Annotated[int, msgspec.Meta(ge=0, le=100)] = 8

    @property
    def is_code(self) -> bool:
        """Whether a Python handler runs this role (instead of the prompt template)."""
        return bool(self.handler)

    @property
    def display(self) -> str:
        """The role's name as the prompt shows it (``title``, else the capitalised role)."""
        return self.title or self.role.capitalize()


class Workflow(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A named set of roles; runs start at ``entry``.

    ``tools`` holds per-tool settings (``[tools.NAME]``: remote, timeout, options); ``mcp`` the MCP
    tool servers (``[mcp.NAME]``, :class:`MCPServerSpec`) whose tools roles may list as ``NAME.TOOL``;
    ``base_dir`` is the workflow file's directory (set by the loader), against which relative
    paths in tool options are resolved. ``budget`` (``[budget]``: ``max_tokens``,
    ``max_model_calls``, ``max_tool_calls``) is each run's default budget; limits given at submit
    time win.
    """

    name: Name
    entry: Name
    roles: Annotated[list[RoleSpec], msgspec.Meta(min_length=1)]
    tools: dict[Name, ToolConfig] = {}
    mcp: dict[Name, MCPServerSpec] = {}
    budget: Budget | None = None
    webhook: str = ""
    """Each run's completion webhook URL unless its submit gives one (``agents/webhooks.py``)."""
    thread_policy: ThreadPolicy = DEFAULT_THREAD_POLICY
    """What a message to a thread does while the thread runs a turn, unless its submit says
    (``protocol.ThreadPolicy``: reject, enqueue, interrupt, rollback)."""
    base_dir: str = ""

    def __post_init__(self) -> None:
        names = [r.role for r in self.roles]
        if len(set(names)) != len(names):
            raise WorkflowError(f"workflow {self.name!r}: duplicate role names in {names}")
        if self.entry not in names:
            raise WorkflowError(f"workflow {self.name!r}: entry role {self.entry!r} is not declared")
        for r in self.roles:
            if r.next and r.next not in names:
                raise WorkflowError(f"workflow {self.name!r}: role {r.role!r} hands off to undeclared role {r.next!r}")
            self._check_role(r, names)
        for server in self.mcp:
            if "." in server:
                raise WorkflowError(f"workflow {self.name!r}: MCP server name {server!r} may not contain '.'")
        if any(r.split for r in self.roles) and not any(r.join for r in self.roles):
            raise WorkflowError(f"workflow {self.name!r}: a role splits its output but no role has join = true")

    def _check_role(self, r: RoleSpec, names: list[str]) -> None:
        where = f"workflow {self.name!r}, role {r.role!r}"
        _template_fields(r.prompt, PROMPT_FIELDS, f"{where}, prompt")
        _template_fields(r.handoff, OUTPUT_FIELDS, f"{where}, handoff")
        for key, template in r.share.items():
            _template_fields(key, OUTPUT_FIELDS, f"{where}, share key {key!r}")
            _template_fields(template, OUTPUT_FIELDS, f"{where}, share.{key}")
        for step in r.steps:
            if step.tool not in r.tools:
                raise WorkflowError(f"{where}: step uses tool {step.tool!r}, which is not in the role's tools list")
            for key, template in step.args.items():
                _template_fields(template, STEP_FIELDS, f"{where}, step {step.tool}.{key}")
        for route in r.routes:
            if route.to != END and route.to not in names:
                raise WorkflowError(f"{where}: route goes to undeclared role {route.to!r} (use a role or 'end')")
            try:
                re.compile(route.when)
            except re.error as exc:
                raise WorkflowError(f"{where}: route pattern {route.when!r} is not a valid regex: {exc}") from None
        if r.split and not r.next and not r.routes:
            raise WorkflowError(f"{where}: a role that splits its output needs a next role")
        if r.handler and (r.steps or r.parse_tools):
            raise WorkflowError(f"{where}: a code role (handler) calls its tools itself; drop steps and parse_tools")

    def run_budget(self, given: Budget | None = None) -> Budget | None:
        """The budget of a new run: ``given``'s limits, each unset one from the workflow's ``budget``."""
        if given is None:
            return self.budget
        return given.over(self.budget)

    def role(self, name: str) -> RoleSpec:
        """The spec of role ``name``; ``WorkflowError`` if the workflow has no such role."""
        for r in self.roles:
            if r.role == name:
                return r
        known = ", ".join(r.role for r in self.roles)
        raise WorkflowError(f"unknown role {name!r} in workflow {self.name!r} (known: {known})")

    def order(self) -> list[RoleSpec]:
        """Roles in handoff order from the entry, then any not reached from it."""
        seen: list[RoleSpec] = []
        current: str = self.entry
        while current and all(r.role != current for r in seen):
            spec = self.role(current)
            seen.append(spec)
            current = spec.next
        return seen + [r for r in self.roles if r not in seen]


SEED = Workflow(
    name=DEFAULT_WORKFLOW,
    entry="planner",
    roles=[
        RoleSpec(role="planner", agent="Alice", next="researcher", handoff="Research and elaborate: {output}"),
        RoleSpec(role="researcher", agent="Bob", next="summarizer", handoff="Summarize key points: {output}"),
        RoleSpec(role="summarizer", agent="Eve"),
    ],
)
