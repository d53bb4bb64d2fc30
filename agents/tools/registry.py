"""The tool registry: built-in tools by name, plus tools registered by the embedding program."""

from __future__ import annotations

import threading

from .base import Tool
from .calculator import Calculator
from .clock import Clock
from .kb_search import KbSearch
from .memory_recall import MemoryRecall

__all__ = ["BUILTIN", "UnknownTool", "get_tool", "known_tools", "register"]

BUILTIN: tuple[type, ...] = (Calculator, Clock, KbSearch, MemoryRecall)
_tools: dict[str, Tool] = {}
_lock = threading.Lock()


class UnknownTool(KeyError):
    """No tool of that name is registered."""

    def __str__(self) -> str:
        return str(self.args[0])


def register(tool: Tool, *, replace: bool = False) -> Tool:
    """Add ``tool`` under ``tool.name``; refuse to shadow another unless ``replace``."""
    with _lock:
        _builtins()
        if tool.name in _tools and not replace:
            raise ValueError(f"a tool named {tool.name!r} is already registered")
        _tools[tool.name] = tool
    return tool


def _builtins() -> None:
    if not _tools:
        for cls in BUILTIN:
            tool = cls()
            _tools[tool.name] = tool


def get_tool(name: str) -> Tool:
    """The tool registered as ``name``; ``UnknownTool`` otherwise."""
    with _lock:
        _builtins()
        if name not in _tools:
            raise UnknownTool(f"unknown tool {name!r} (known: {', '.join(sorted(_tools))})")
        return _tools[name]


def known_tools() -> set[str]:
    """Names of every registered tool."""
    with _lock:
        _builtins()
        return set(_tools)
