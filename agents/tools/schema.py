"""Python functions as tools: the JSON Schema of their arguments comes from their type hints.

:func:`function_tool` turns a plain or ``async`` function into a :class:`FunctionTool`, a baton
``Tool`` that a model can call by name. The arguments' schema is msgspec's JSON Schema of a
Struct built from the signature (:func:`msgspec.json.schema`), so every type msgspec knows works:
``int``, ``float``, ``bool``, ``str``, ``Literal``, enums, lists, dicts, Structs, dataclasses,
``Annotated[int, Meta(ge=0)]`` constraints; parameters with defaults are optional. Descriptions
come from the docstring: its first paragraph describes the tool, and a Google-style ``Args:``
section describes the parameters (``Annotated[..., Meta(description=...)]`` wins over it).

A parameter annotated :class:`~baton.agents.tools.base.ToolContext` (or ``ToolContext | None``) is not an argument: it
receives the calling context. Calls decode their arguments with the same Struct (a string
``"3"`` is accepted for an ``int``, as the text tool syntax sends strings), so a model's bad
arguments are a :class:`~baton.agents.tools.base.ToolError` naming the field. A result that is
not a string is sent back as JSON.
"""

from __future__ import annotations

import asyncio
import inspect
import re
import typing
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

import msgspec

from ...protocol.chat import FunctionDef, ToolDef
from .base import Tool, ToolContext, ToolError

__all__ = ["FunctionTool", "function_tool", "tool_def", "wire_name"]

_ARGS_HEADER = re.compile(r"^\s*(Args|Arguments|Parameters):\s*$")
_ARG_LINE = re.compile(r"^\s*\*{0,2}([A-Za-z_][A-Za-z0-9_]*)\s*(\([^)]*\))?\s*:\s*(.*)$")
_SECTION = re.compile(r"^\s*[A-Z][A-Za-z ]*:\s*$")
_ANY_STRINGS: dict[str, Any] = {"type": "object", "additionalProperties": {"type": "string"}}


def wire_name(name: str) -> str:
    """The function name a model sees for baton tool ``name`` (OpenAI allows no dots: ``.`` -> ``__``)."""
    return name.replace(".", "__")


def _docs(doc: str) -> tuple[str, dict[str, str]]:
    """The description (first paragraph) and the ``Args:`` section's descriptions of a docstring."""
    text = inspect.cleandoc(doc or "")
    summary = " ".join(text.split("\n\n", 1)[0].split()) if text else ""
    params: dict[str, str] = {}
    in_args, current = False, ""
    for line in text.splitlines():
        if _ARGS_HEADER.match(line):
            in_args, current = True, ""
        elif in_args and _SECTION.match(line):
            in_args = False
        elif in_args and (m := _ARG_LINE.match(line)):
            current = m.group(1)
            params[current] = m.group(3).strip()
        elif in_args and current and line.strip():
            params[current] = f"{params[current]} {line.strip()}".strip()
    return summary, params


class FunctionTool:
    """A Python function as a baton tool (see the module docstring).

    Attributes:
        name, description: as the workflow and the model refer to it.
        parameters: the JSON Schema of its arguments (an object).
        fn: the function; ``is_async`` whether it is a coroutine function.
    """

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        self.is_async = inspect.iscoroutinefunction(fn)
        summary, arg_docs = _docs(fn.__doc__ or "")
        self.description = description if description is not None else summary
        try:
            hints = typing.get_type_hints(fn, include_extras=True)
        except Exception as exc:  # noqa: BLE001 - any failure to resolve the hints is the same error
            raise TypeError(f"tool {self.name!r}: its type hints cannot be resolved: {exc}") from None
        fields: list[tuple[str, Any, Any] | tuple[str, Any]] = []
        self._context_param: str | None = None
        for param in inspect.signature(fn).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                raise TypeError(f"tool {self.name!r}: *args and **kwargs cannot be described to a model")
            hint = hints.get(param.name, Any)
            if hint is ToolContext or ToolContext in typing.get_args(hint):
                self._context_param = param.name
                continue
            fields.append((param.name, hint) if param.default is param.empty else (param.name, hint, param.default))
        try:
            self.args_type: type[msgspec.Struct] = msgspec.defstruct(
                f"{_title(self.name)}Args", fields, kw_only=True, forbid_unknown_fields=True)
            self.parameters: dict[str, Any] = _object_schema(self.args_type, arg_docs)
        except (TypeError, ValueError) as exc:
            raise TypeError(f"tool {self.name!r}: its type hints have no JSON schema: {exc}") from None

    def __repr__(self) -> str:
        return f"FunctionTool({self.name!r}, async={self.is_async})"

    def definition(self) -> ToolDef:
        """The tool as offered to a model (OpenAI ``tools[i]``)."""
        return ToolDef(function=FunctionDef(name=wire_name(self.name), description=self.description,
                                            parameters=self.parameters))

    def bind(self, args: Mapping[str, Any], ctx: ToolContext | None = None) -> dict[str, Any]:
        """Keyword arguments for the function: ``args`` checked against the signature (``ToolError``)."""
        try:
            decoded = msgspec.convert(dict(args), self.args_type, strict=False)
        except msgspec.ValidationError as exc:
            raise ToolError(f"bad arguments for {self.name!r}: {exc}") from None
        kwargs = {f: getattr(decoded, f) for f in decoded.__struct_fields__}
        if self._context_param is not None:
            kwargs[self._context_param] = ctx if ctx is not None else ToolContext()
        return kwargs

    def run(self, args: Mapping[str, Any], ctx: ToolContext) -> str:
        """Call the function in this thread (an async one in a fresh event loop); the result as text."""
        kwargs = self.bind(args, ctx)
        if self.is_async:
            return _text(asyncio.run(typing.cast(Callable[..., Coroutine[Any, Any, Any]], self.fn)(**kwargs)))
        return _text(self.fn(**kwargs))

    async def arun(self, args: Mapping[str, Any], ctx: ToolContext | None = None) -> str:
        """Call the function from async code (a plain one in a thread); the result as text."""
        kwargs = self.bind(args, ctx)
        if self.is_async:
            return _text(await self.fn(**kwargs))
        return _text(await asyncio.to_thread(self.fn, **kwargs))


def function_tool(fn: Callable[..., Any], *, name: str | None = None, description: str | None = None) -> FunctionTool:
    """``fn`` as a tool named ``name`` (default: the function's name); raises ``TypeError`` when its
    signature cannot be described as a JSON Schema."""
    return FunctionTool(fn, name=name, description=description)


def tool_def(tool: Tool) -> ToolDef:
    """Any baton tool as offered to a model: its own ``parameters`` schema when it has one, else an
    object of string arguments (the built-in tools take strings)."""
    definition = getattr(tool, "definition", None)
    if callable(definition):
        found = definition()
        if isinstance(found, ToolDef):
            return found
    parameters = getattr(tool, "parameters", None)
    return ToolDef(function=FunctionDef(name=wire_name(tool.name), description=tool.description,
                                        parameters=parameters if isinstance(parameters, dict) else dict(_ANY_STRINGS)))


def _title(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", name) if part) or "Tool"


def _object_schema(struct: type[msgspec.Struct], arg_docs: Mapping[str, str]) -> dict[str, Any]:
    """msgspec's schema of ``struct`` as a self-contained object schema (its own ``$defs``), with descriptions."""
    raw = msgspec.json.schema(struct)
    defs: dict[str, Any] = dict(raw.get("$defs", {}))
    ref = str(raw.get("$ref", "")).rsplit("/", 1)[-1]
    root: dict[str, Any] = dict(defs.pop(ref, raw))
    root.pop("title", None)
    properties = {k: dict(v) for k, v in root.get("properties", {}).items()}
    for key, text in arg_docs.items():
        if key in properties and text and "description" not in properties[key]:
            properties[key]["description"] = text
    root["properties"] = properties
    if not root.get("required"):
        root.pop("required", None)
    root["additionalProperties"] = False
    if defs:
        root["$defs"] = defs
    return root


def _text(value: Any) -> str:
    """A tool's result as the text a model reads: strings as they are, anything else as JSON."""
    if isinstance(value, str):
        return value
    try:
        return msgspec.json.encode(value).decode()
    except TypeError:
        return str(value)
