"""Baton's wire messages: one tagged union of frozen msgspec Structs.

Every message on a stream is one of these, encoded as JSON with a ``"type"`` tag.
Schema evolution follows msgspec's rules: new fields get defaults, a field's type never
changes, and ``v`` (the protocol version) is bumped only for incompatible changes.
No field is typed ``Any``: decoding never builds unbounded nested structures.
"""

from __future__ import annotations

import time
import uuid

import msgspec

__all__ = [
    "PROTOCOL_VERSION",
    "DeadLetter",
    "Error",
    "Hop",
    "Message",
    "Result",
    "Task",
    "ToolCall",
    "ToolResult",
    "new_id",
    "now",
]

PROTOCOL_VERSION = 1


def new_id() -> str:
    """Return a fresh random id (32 hex characters)."""
    return uuid.uuid4().hex


def now() -> float:
    """Return the current wall-clock time in seconds since the epoch."""
    return time.time()


class Hop(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a run's trace: which role and consumer handled which message, and when."""

    role: str
    consumer: str = ""
    msg_id: str = ""
    started: float = 0.0
    finished: float = 0.0
    tokens: int = 0


class _Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every message carries."""

    v: int = PROTOCOL_VERSION
    id: str = msgspec.field(default_factory=new_id)
    run_id: str
    parent_id: str | None = None
    hop: int = 0
    created_at: float = msgspec.field(default_factory=now)
    trace: tuple[Hop, ...] = ()


class Task(_Base, frozen=True, kw_only=True, tag="task"):
    """Work for one role: ``task`` is the text the role's agent receives."""

    role: str
    task: str
    workflow: str = "seed"
    deadline: float | None = None
    max_hops: int = 0
    part: int = 0
    parts: int = 1
    group: str = ""


class Result(_Base, frozen=True, kw_only=True, tag="result"):
    """The final output of a run, written by the last role."""

    role: str
    output: str


class Error(_Base, frozen=True, kw_only=True, tag="error"):
    """A run that failed: the role where it failed and why."""

    role: str
    reason: str


class ToolCall(_Base, frozen=True, kw_only=True, tag="tool_call"):
    """A request to run tool ``tool`` with string arguments, answered on ``reply_to``."""

    tool: str
    args: dict[str, str] = {}
    caller: str = ""
    reply_to: str = ""
    timeout: float = 10.0


class ToolResult(_Base, frozen=True, kw_only=True, tag="tool_result"):
    """The answer to a ``ToolCall``: ``output`` on success, ``error`` otherwise."""

    tool: str
    call_id: str
    output: str = ""
    error: str = ""


class DeadLetter(_Base, frozen=True, kw_only=True, tag="dead_letter"):
    """A message that could not be handled, kept with its reason for inspection and replay.

    ``original`` is the raw entry as received (decoded leniently as UTF-8 for display);
    ``stream`` and ``entry_id`` say where it came from.
    """

    role: str
    reason: str
    original: str
    stream: str = ""
    entry_id: str = ""
    attempts: int = 0


Message = Task | Result | Error | ToolCall | ToolResult | DeadLetter
