"""A run's events: what happened to it, in order, as one tagged union of frozen msgspec Structs.

Every run has an event log (one Redis stream per run, ``broker/events.py``); each entry holds one
event encoded as JSON with a ``"type"`` tag. The entry id is the event id: a reader resumes after
it. Hop and terminal events are written in the same atomic step as the handoff they describe;
``hop_started``, ``tokens``, ``tool_call`` and ``tool_result`` are best effort (a crash may lose
some of the interrupted hop's, never a hop event). A terminal event (``done``, ``failed``,
``cancelled``) is the last event of a run.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

import msgspec

from .codec import ProtocolError, decode_json
from .fields import Count, HopCount, Id, MaybeId, MaybeName, Name
from .limits import MAX_MESSAGE_BYTES
from .messages import now
from .states import TERMINAL_STATUSES, Decision

__all__ = [
    "TERMINAL_EVENTS",
    "Cancelled",
    "Custom",
    "Done",
    "Event",
    "Failed",
    "HopFinished",
    "HopStarted",
    "Queued",
    "ReviewDecided",
    "ReviewRequested",
    "Tokens",
    "ToolCalled",
    "ToolReturned",
    "Waiting",
    "Woken",
    "decode_event",
    "encode_event",
    "is_terminal",
]

Seconds = Annotated[float, msgspec.Meta(ge=0, description="Seconds since the epoch.")]


class _Event(msgspec.Struct, frozen=True, kw_only=True, tag_field="type"):
    """Fields every event carries: the run, when, and which role, agent and hop it concerns."""

    run_id: Id
    at: Seconds = msgspec.field(default_factory=now)
    role: MaybeName = ""
    agent: MaybeName = ""
    hop: HopCount = 0


class Queued(_Event, frozen=True, kw_only=True, tag="queued"):
    """The run was submitted: ``task`` is its input, ``role`` the first role of ``workflow``."""

    workflow: MaybeName = ""
    task: str = ""


class HopStarted(_Event, frozen=True, kw_only=True, tag="hop_started"):
    """A worker took the run's task ``msg_id`` for ``role`` and is about to call the model."""

    msg_id: MaybeId = ""
    consumer: str = ""


class Tokens(_Event, frozen=True, kw_only=True, tag="tokens"):
    """A chunk of text the model generated for hop ``msg_id``; ``index`` numbers the chunks from 0."""

    msg_id: MaybeId = ""
    text: str
    index: Count = 0


class HopFinished(_Event, frozen=True, kw_only=True, tag="hop_finished"):
    """A hop committed: ``output`` is the role's response, ``tokens`` how many it generated."""

    msg_id: MaybeId = ""
    consumer: str = ""
    tokens: Count = 0
    started: Seconds = 0.0
    finished: Seconds = 0.0
    output: str = ""


class ToolCalled(_Event, frozen=True, kw_only=True, tag="tool_call"):
    """Hop ``msg_id`` called tool ``tool`` with ``args``."""

    msg_id: MaybeId = ""
    tool: Name
    args: dict[str, str] = {}


class ToolReturned(_Event, frozen=True, kw_only=True, tag="tool_result"):
    """Tool ``tool`` answered hop ``msg_id``: ``output`` on success, ``error`` otherwise."""

    msg_id: MaybeId = ""
    tool: Name
    output: str = ""
    error: str = ""


class ReviewRequested(_Event, frozen=True, kw_only=True, tag="review_requested"):
    """The run parked for a human decision on ``output`` (review ``review_id``)."""

    review_id: MaybeId = ""
    msg_id: MaybeId = ""
    output: str = ""


class ReviewDecided(_Event, frozen=True, kw_only=True, tag="review_decided"):
    """A human decided review ``review_id``: ``output`` goes on (approve) or ``reason`` fails the run."""

    review_id: MaybeId = ""
    decision: Decision
    output: str = ""
    reason: str = ""


class Waiting(_Event, frozen=True, kw_only=True, tag="waiting"):
    """A code role's handler parked its task: ``kind`` ``sleep`` until ``until``, or ``signal`` for
    the signal ``name`` (``until``: its timeout; None without one)."""

    kind: Literal["sleep", "signal"]
    name: MaybeName = ""
    until: float | None = None
    msg_id: MaybeId = ""


class Woken(_Event, frozen=True, kw_only=True, tag="woken"):
    """A parked task goes on: its timer ran out (``timer``), its signal came (``signal``), its wait
    timed out (``timeout``) or its run's deadline passed (``deadline``)."""

    kind: Literal["sleep", "signal"]
    name: MaybeName = ""
    why: Literal["timer", "signal", "timeout", "deadline"] = "timer"
    msg_id: MaybeId = ""


class Custom(_Event, frozen=True, kw_only=True, tag="custom"):
    """Data a code role emitted (``ctx.emit(data)``) during hop ``msg_id``: any JSON value."""

    msg_id: MaybeId = ""
    data: Any = None


class Done(_Event, frozen=True, kw_only=True, tag="done"):
    """The run finished with ``output`` (terminal)."""

    output: str = ""


class Failed(_Event, frozen=True, kw_only=True, tag="failed"):
    """The run failed for ``reason`` (terminal)."""

    reason: str = ""


class Cancelled(_Event, frozen=True, kw_only=True, tag="cancelled"):
    """The run was cancelled (terminal)."""

    reason: str = ""


Event = (Queued | HopStarted | Tokens | HopFinished | ToolCalled | ToolReturned | ReviewRequested | ReviewDecided
         | Waiting | Woken | Custom | Done | Failed | Cancelled)

TERMINAL_EVENTS: tuple[type[Done | Failed | Cancelled], ...] = tuple(
    kind for kind in get_args(Event) if kind.__struct_config__.tag in TERMINAL_STATUSES)
"""The event types that end a run's log: those tagged with a terminal run status (``Done``,
``Failed``, ``Cancelled``)."""

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Event] = msgspec.json.Decoder(Event)


def is_terminal(event: Event) -> bool:
    """Whether ``event`` ends its run (``done``, ``failed`` or ``cancelled``)."""
    return isinstance(event, TERMINAL_EVENTS)


def encode_event(event: Event) -> bytes:
    """Encode an event as compact JSON bytes."""
    return _encoder.encode(event)


def decode_event(data: bytes | bytearray | memoryview | str, *, limit: int = MAX_MESSAGE_BYTES) -> Event:
    """Decode one event; ``ProtocolError`` with a one-line reason for anything else."""
    size = len(data)
    if size > limit:
        raise ProtocolError(f"event too large: {size} bytes > limit {limit}")
    return decode_json(_decoder, data, "event")
