"""Tools agents can call: a small Protocol, a registry of built-ins, inline and remote runners.

Built-ins: ``calculator`` (safe arithmetic), ``clock``, ``memory_recall`` (this run's shared
memory and scratchpads), ``kb_search`` (BM25 over local text files). See ``syntax`` for how a
model's output calls a tool, ``runner`` for the allow-list and timeouts, ``worker`` for the
tool worker pool, ``schema`` for Python functions as tools (JSON schema from type hints),
``loop`` for the OpenAI tool-calling loop, ``mcp`` for MCP tool servers (imported on use).
"""

from .base import Tool, ToolContext, ToolError
from .loop import LoopResult, ToolRoundsExceeded, run_tool_loop
from .registry import UnknownTool, get_tool, known_tools, register
from .runner import ToolOutcome, ToolRunner, render_outcomes, run_tool
from .schema import FunctionTool, function_tool, tool_def
from .syntax import ParsedCall, format_call, parse_calls

__all__ = [
    "FunctionTool",
    "LoopResult",
    "ParsedCall",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolOutcome",
    "ToolRoundsExceeded",
    "ToolRunner",
    "UnknownTool",
    "format_call",
    "function_tool",
    "get_tool",
    "known_tools",
    "parse_calls",
    "register",
    "render_outcomes",
    "run_tool",
    "run_tool_loop",
    "tool_def",
]
