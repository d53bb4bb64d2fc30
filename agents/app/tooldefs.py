"""The ``tools=[...]`` of ``ctx.chat`` as the ``ToolDef`` s a chat model is offered, and their baton names.

Items are tool names (registered tools: ``@app.tool`` functions, built-ins, MCP tools), the
decorated functions themselves, or ``ToolDef`` s (``agents/tools/schema.tool_def``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ...protocol.chat import ToolDef
from ..tools.registry import get_tool
from ..tools.schema import tool_def

__all__ = ["tool_defs", "tool_name"]


def tool_name(item: Any) -> str:
    """The baton tool name of a ``tools`` item (a name, a tool, or an ``@app.tool`` function)."""
    if isinstance(item, str):
        return item
    if isinstance(item, ToolDef):
        return item.function.name
    return str(getattr(item, "__baton_tool__", None) or getattr(item, "name", None) or getattr(item, "__name__", ""))


def tool_defs(tools: Sequence[Any]) -> list[ToolDef]:
    """``ToolDef`` s for ``tools`` (``UnknownTool`` for a name nobody registered)."""
    return [item if isinstance(item, ToolDef) else tool_def(get_tool(tool_name(item))) for item in tools]
