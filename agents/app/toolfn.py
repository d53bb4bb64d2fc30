"""``@app.tool``: a Python function as a baton tool, its JSON schema from its type hints (msgspec).

The function's parameters become a msgspec Struct; its JSON Schema is the tool's ``parameters``
(what a chat model sees), and arguments (JSON values, or the strings a workflow step passes) are
converted to the annotated types before the call. A ``str`` result is the tool's output; anything
else is encoded as JSON. Async functions run in their own event loop in the tool's thread.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from baton.agents.tools.base import ToolContext, ToolError

__all__ = ["FunctionTool", "function_tool"]

_encode = msgspec.json.Encoder().encode


class FunctionTool:
    """A tool calling ``fn`` with the arguments converted to its parameters' types."""

    def __init__(self, fn: Callable[..., Any], name: str, description: str, params: type[msgspec.Struct],
                 takes_ctx: bool) -> None:
        self.fn = fn
        self.name = name
        self.description = description
        self.args_type = params
        self.takes_ctx = takes_ctx
        schema = msgspec.json.schema(params)
        body = schema.get("$defs", {}).get(params.__name__, schema)
        self.parameters: dict[str, Any] = {"type": "object", "properties": body.get("properties", {}),
                                           "required": body.get("required", [])}

    def run(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        """Convert ``args``, call the function, return its result as text (``ToolError`` on bad arguments)."""
        try:
            parsed = msgspec.convert(dict(args), self.args_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolError(f"bad arguments for {self.name}: {exc}") from None
        kwargs = {f: getattr(parsed, f) for f in parsed.__struct_fields__}
        if self.takes_ctx:
            kwargs["ctx"] = ctx
        value = self.fn(**kwargs)
        if inspect.isawaitable(value):
            value = asyncio.run(_await(value))
        return value if isinstance(value, str) else _encode(value).decode()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self.fn(*args, **kwargs)


async def _await(value: Any) -> Any:
    return await value


def function_tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> FunctionTool:
    """A ``FunctionTool`` for ``fn``: named ``name`` (default: the function's name), described by
    ``description`` (default: its docstring's first paragraph)."""
    hints = typing.get_type_hints(fn)
    fields: list[tuple[str, Any] | tuple[str, Any, Any]] = []
    takes_ctx = False
    for p in inspect.signature(fn).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            raise TypeError(f"tool {fn.__name__}: *args and **kwargs cannot be described to a model")
        if p.name == "ctx" and hints.get("ctx") is ToolContext:
            takes_ctx = True
            continue
        hint = hints.get(p.name, str)
        fields.append((p.name, hint) if p.default is p.empty else (p.name, hint, p.default))
    tool_name = name or fn.__name__
    params = msgspec.defstruct(f"{tool_name.replace('.', '_')}_args", fields, kw_only=True, forbid_unknown_fields=True)
    doc = inspect.getdoc(fn) or ""
    return FunctionTool(fn, tool_name, description if description is not None else doc.split("\n\n")[0], params,
                        takes_ctx)
