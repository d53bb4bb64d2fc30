"""Baton's wire messages: one tagged union of frozen msgspec Structs.

Every message on a stream is one of these, encoded as JSON with a ``"type"`` tag.
Schema evolution follows msgspec's rules: new fields get defaults, a field's type never
changes, and ``v`` (the protocol version) is bumped only for incompatible changes.
No field is typed ``Any``: decoding never builds unbounded nested structures. What is valid is
said by the field types (``protocol/fields.py``): names and ids are non-empty and key-safe, hops
and parts are bounded; decoding enforces it and ``baton schema`` shows it.
"""

from __future__ import annotations

import time
import uuid

import msgspec

from .fields import (
    Count,
    HopCount,
    HopLimit,
    Id,
    MaybeId,
    MaybeName,
    Name,
    PartCount,
    PartIndex,
    Priority,
    ToolTimeout,
    TraceParent,
    TraceState,
)
from .states import Decision

__all__ = [
    "DEFAULT_WORKFLOW",
    "PROTOCOL_VERSION",
    "DeadLetter",
    "Error",
    "Hop",
    "Message",
    "Result",
    "ReviewDecision",
    "Task",
    "ToolCall",
    "ToolResult",
    "new_id",
    "now",
]

PROTOCOL_VERSION = 1

DEFAULT_WORKFLOW = "seed"
"""The workflow a task belongs to when it names none: the seed notebook's chain."""


def new_id() -> str:
    """Return a fresh random id (32 hex characters)."""
    return uuid.uuid4().hex


def now() -> float:
    """Return the current wall-clock time in seconds since the epoch."""
    return time.time()


class Hop(msgspec.Struct, frozen=True, kw_only=True):
    """One step of a run's trace: which role and consumer handled which message, and when."""

    role: Name
    consumer: str = ""
    msg_id: str = ""
    started: float = 0.0
    finished: float = 0.0
    tokens: Count = 0


class ReviewDecision(msgspec.Struct, frozen=True, kw_only=True):
    """A human's decision on a role's parked output, carried back to the role by its continuation task.

    ``output`` is the output to hand off (the proposed one, or the reviewer's replacement);
    ``prompt``, ``started``, ``finished`` and ``tokens`` describe the generation that was reviewed,
    so the role's worker completes the handoff without calling the model again.
    """

    review_id: Id
    decision: Decision
    output: str = ""
    reason: str = ""
    prompt: str = ""
    started: float = 0.0
    finished: float = 0.0
    tokens: Count = 0


class _Base(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every message carries."""

    v: int = PROTOCOL_VERSION
    id: Id = msgspec.field(default_factory=new_id)
    run_id: Id
    parent_id: Id | None = None
    hop: HopCount = 0
    created_at: float = msgspec.field(default_factory=now)
    trace: tuple[Hop, ...] = ()
    tenant: MaybeName = ""
    """The tenant the run belongs to (empty: none). Only the submit path sets it (``agents/submit.py``,
    written with the run record); every hop copies it, and a worker checks it against the run record
    and dead-letters an entry whose tenant is not its run's (``agents/runtime/stages/guard.py``)."""


class Task(_Base, frozen=True, kw_only=True, tag="task"):
    """Work for one role of one workflow: ``task`` is the text the role's agent receives.

    ``max_hops`` limits the run's handoffs (``None``: the worker's ``BATON_MAX_HOPS``); a task of
    a workflow the worker does not run is dead-lettered. ``traceparent`` and ``tracestate`` (W3C
    Trace Context) put the hop under its submitter's trace: empty when nobody traces. ``review`` is set
    on the continuation of a reviewed role's parked output: the worker hands off the decided output
    without calling the model. ``priority`` is the run's lane: every task the run hands on keeps it.
    """

    role: Name
    task: str
    workflow: Name = DEFAULT_WORKFLOW
    deadline: float | None = None
    max_hops: HopLimit | None = None
    part: PartIndex = 0
    parts: PartCount = 1
    group: MaybeId = ""
    traceparent: TraceParent = ""
    tracestate: TraceState = ""
    review: ReviewDecision | None = None
    priority: Priority = "interactive"


class Result(_Base, frozen=True, kw_only=True, tag="result"):
    """The final output of a run, written by the last role."""

    role: Name
    output: str


class Error(_Base, frozen=True, kw_only=True, tag="error"):
    """A run that failed: the role where it failed and why."""

    role: Name
    reason: str


class ToolCall(_Base, frozen=True, kw_only=True, tag="tool_call"):
    """A request to run tool ``tool`` with string arguments, answered on ``reply_to``."""

    tool: Name
    args: dict[str, str] = {}
    caller: MaybeName = ""
    reply_to: str = ""
    timeout: ToolTimeout = 10.0


class ToolResult(_Base, frozen=True, kw_only=True, tag="tool_result"):
    """The answer to a ``ToolCall``: ``output`` on success, ``error`` otherwise."""

    tool: Name
    call_id: Id
    output: str = ""
    error: str = ""


class DeadLetter(_Base, frozen=True, kw_only=True, tag="dead_letter"):
    """A message that could not be handled, kept with its reason for inspection and replay.

    ``original`` is the raw entry as received (decoded leniently as UTF-8 for display);
    ``stream`` and ``entry_id`` say where it came from; ``run_id`` is empty when the original
    named no valid run.
    """

    run_id: MaybeId = ""
    role: Name
    reason: str
    original: str
    stream: str = ""
    entry_id: str = ""
    attempts: Count = 0


Message = Task | Result | Error | ToolCall | ToolResult | DeadLetter
