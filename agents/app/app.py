"""``App``: a workflow written in Python, its roles and tools declared with decorators.

```python
from baton import App, Context

app = App("support")

@app.role(next="answer")
async def triage(ctx: Context, task: str) -> str:
    return await ctx.generate(f"Triage: {task}")
```

``App.workflow()`` is an ordinary ``Workflow`` whose code roles name their handler
(``module:qualname``): streams, routes, fan-out and join, review, budgets, priority and memory
modes need no special case. The first role declared is the entry unless one says ``entry=True``.
"""

from __future__ import annotations

import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import msgspec

from ...protocol import Budget
from ..tools.schema import FunctionTool, function_tool
from ..workflow.handlers import register_handler
from ..workflow.spec import RoleSpec, Route, Split, ToolConfig, Workflow, WorkflowError
from .tooldefs import tool_name

__all__ = ["App"]

F = TypeVar("F", bound=Callable[..., Any])


class App:
    """A named workflow of code roles (and tools); ``name`` is the workflow's name.

    ``mcp`` names MCP servers whose tools the roles may call (``{"kb": {"command": "python",
    "args": [...]}}`` or ``{"kb": {"url": "http://..."}}``; their tools are ``kb.<tool>``);
    ``retryable`` lists exception types a handler may raise that mean "try again later";
    ``budget`` is each run's default budget; ``model`` the default model of every role.
    """

    def __init__(self, name: str, *, mcp: Mapping[str, Mapping[str, Any]] | None = None,
                 retryable: Sequence[type[BaseException]] = (), budget: Budget | None = None, model: str = "",
                 tools: Mapping[str, ToolConfig] | None = None) -> None:
        self.name = name
        self.mcp: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (mcp or {}).items()}
        self.retryable: tuple[type[BaseException], ...] = tuple(retryable)
        self.budget = budget
        self.model = model
        self.tool_settings = dict(tools or {})
        self.roles: dict[str, RoleSpec] = {}
        self.handlers: dict[str, Callable[..., Any]] = {}
        self.tools: dict[str, FunctionTool] = {}
        self._entry = ""
        self._entry_given = False
        self._own_tools: set[str] = set()

    def __repr__(self) -> str:
        return f"App({self.name!r}, roles={list(self.roles)})"

    def role(self, name: str | None = None, *, next: str | None = None,
             routes: Sequence[Route | Mapping[str, str]] = (),
             join: bool = False, review: str | None = None, model: str | None = None,
             max_new_tokens: int | None = None, timeout: float | None = None, memory: str = "run",
             memory_window: int = 3, tools: Sequence[str | Callable[..., Any]] | None = None,
             max_tool_rounds: int = 8, agent: str | None = None, title: str = "", handoff: str = "{output}",
             entry: bool = False, rpm: int = 0, tpm: int = 0, split: Split | Mapping[str, Any] | None = None,
             max_backlog: int | None = None) -> Callable[[F], F]:
        """Declare the decorated function ``(ctx: Context, task: str) -> str | Outcome`` a role.

        ``name`` defaults to the function's name, ``agent`` (whose memory it keeps) to the role's
        name. A returned ``str`` goes to ``next`` through ``handoff`` (``{output}``), or is the run's
        result when the role has no ``next``. ``tools`` is the role's allow-list (default: every
        ``@app.tool`` of the app and the tools of its MCP servers). The other options are the
        workflow file's (``RoleSpec``).
        """

        def decorate(fn: F) -> F:
            role = name or fn.__name__
            if role in self.roles:
                raise WorkflowError(f"app {self.name!r}: role {role!r} is declared twice")
            ref = register_handler(fn)
            allowed = None if tools is None else [tool_name(t) for t in tools]
            fields: dict[str, Any] = {
                "role": role, "agent": agent or role, "title": title, "next": next or "", "handoff": handoff,
                "model": model or self.model, "max_new_tokens": max_new_tokens or 0, "memory": memory,
                "memory_window": memory_window, "join": join, "routes": list(routes), "review": review or "",
                "rpm": rpm, "tpm": tpm, "handler": ref, "timeout": timeout or 0.0,
                "max_tool_rounds": max_tool_rounds, "split": split, "max_backlog": max_backlog,
                "tools": allowed,
            }
            try:
                spec = msgspec.convert({k: v for k, v in fields.items() if v is not None}, RoleSpec,
                                       from_attributes=True)
            except msgspec.ValidationError as exc:
                raise WorkflowError(f"app {self.name!r}, role {role!r}: {exc}") from None
            if entry and self._entry_given:
                raise WorkflowError(f"app {self.name!r}: roles {self._entry!r} and {role!r} both say entry=True")
            self.roles[role] = spec
            self.handlers[role] = fn
            if allowed is not None:
                self._own_tools.add(role)
            if entry or not self._entry:
                self._entry, self._entry_given = role, entry
            return fn

        return decorate

    def tool(self, fn: F | None = None, *, name: str | None = None, description: str | None = None) -> Any:
        """Register the decorated function as a tool (``@app.tool`` or ``@app.tool(name=...)``); its JSON
        schema comes from its type hints. The function stays callable as before."""

        def decorate(f: F) -> F:
            from ..tools.registry import register

            t = function_tool(f, name=name, description=description)
            register(t, replace=True)
            self.tools[t.name] = t
            f.__baton_tool__ = t.name  # type: ignore[attr-defined]
            return f

        return decorate(fn) if fn is not None else decorate

    def workflow(self) -> Workflow:
        """The app as an ordinary ``Workflow`` (``WorkflowError`` when its roles do not fit together)."""
        if not self.roles:
            raise WorkflowError(f"app {self.name!r} declares no roles (decorate a function with @app.role())")
        everyone = sorted(self.tools)
        roles = [spec if spec.role in self._own_tools else msgspec.structs.replace(spec, tools=everyone)
                 for spec in self.roles.values()]
        extra: dict[str, Any] = {}
        if self.mcp and "mcp" not in Workflow.__struct_fields__:
            raise WorkflowError(f"app {self.name!r}: this baton has no MCP support")
        try:
            if self.mcp:
                extra["mcp"] = msgspec.convert(self.mcp, typing.get_type_hints(Workflow)["mcp"])
            return Workflow(name=self.name, entry=self._entry, roles=roles, tools=self.tool_settings,
                            budget=self.budget, **extra)
        except msgspec.ValidationError as exc:
            raise WorkflowError(f"app {self.name!r}: {exc}") from None

