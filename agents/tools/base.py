"""The tool contract: a named callable from string arguments to a string result.

A tool raises ``ToolError`` for a failure it can explain (bad input, nothing found); any other
exception is caught by the runner too. Either way the caller gets a ``tool_result`` whose
``error`` says what happened, and the worker carries on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from ...broker import Keys, Redis

__all__ = ["Tool", "ToolContext", "ToolError"]


class ToolError(Exception):
    """A tool failure with a message fit for the caller (becomes ``ToolResult.error``)."""


@dataclass(frozen=True, slots=True)
class ToolContext:
    """What a tool may use besides its arguments: the run, the caller, Redis, its options."""

    client: Redis | None = None
    keys: Keys = field(default_factory=Keys)
    run_id: str = ""
    agent: str = ""
    role: str = ""
    options: Mapping[str, str] = field(default_factory=dict)
    base_dir: str = ""

    def path(self, value: str) -> Path:
        """``value`` as a path, relative ones resolved against the workflow file's directory."""
        p = Path(value).expanduser()
        return p if p.is_absolute() or not self.base_dir else Path(self.base_dir) / p


@runtime_checkable
class Tool(Protocol):
    """A tool: ``name`` (as workflows and models refer to it), ``description``, and ``run``."""

    name: str
    description: str

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        """Run with string arguments; return the result text or raise ``ToolError``."""
        ...
