"""Tools agents can call: a small Protocol, a registry of built-ins, inline and remote runners.

Built-ins: ``calculator`` (safe arithmetic), ``clock``, ``memory_recall`` (this run's shared
memory and scratchpads), ``kb_search`` (BM25 over local text files). See ``syntax`` for how a
model's output calls a tool, ``runner`` for the allow-list and timeouts, ``worker`` for the
tool worker pool.
"""

from baton.agents.tools.base import Tool, ToolContext, ToolError
from baton.agents.tools.registry import UnknownTool, get_tool, known_tools, register
from baton.agents.tools.runner import ToolOutcome, ToolRunner, render_outcomes, run_tool
from baton.agents.tools.syntax import ParsedCall, format_call, parse_calls

__all__ = [
    "ParsedCall",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRunner",
    "UnknownTool",
    "format_call",
    "get_tool",
    "known_tools",
    "parse_calls",
    "register",
    "render_outcomes",
    "run_tool",
]
