"""The ``tools=[...]`` of ``ctx.chat`` as the ``ToolDef`` s a chat model is offered.

Items are tool names (registered tools: ``@app.tool`` functions, built-ins, MCP tools), the
decorated functions themselves, or ``ToolDef`` s. A tool that says nothing of its parameters is
offered with an empty object schema.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from baton.agents.tools.registry import get_tool

__all__ = ["tool_defs"]

EMPTY_SCHEMA: dict[str, Any] = {"type": "object", "properties": {}}


def tool_defs(tools: Sequence[Any]) -> list[Any]:
    """``ToolDef`` s for ``tools`` (``UnknownTool`` for a name nobody registered)."""
    from baton.protocol.chat import FunctionDef, ToolDef

    defs: list[Any] = []
    for item in tools:
        if isinstance(item, ToolDef):
            defs.append(item)
            continue
        tool = get_tool(item if isinstance(item, str) else getattr(item, "name", getattr(item, "__name__", "")))
        defs.append(ToolDef(function=FunctionDef(
            name=tool.name, description=tool.description,
            parameters=dict(getattr(tool, "parameters", None) or EMPTY_SCHEMA))))
    return defs
