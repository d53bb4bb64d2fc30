"""Constrained field types shared by the wire messages and the workflow spec.

The constraints are msgspec ``Meta`` annotations: decoding enforces them (a violation is a
one-line ``ProtocolError`` or ``WorkflowError``) and the JSON Schema shows them. Names and ids
become parts of Redis keys, so they are limited to a key-safe alphabet: letters, digits, ``_``,
``.`` and ``-``, starting with a letter or digit (no ``:``, ``{``, ``}``, ``*`` or spaces).
"""

from __future__ import annotations

from typing import Annotated, Literal, get_args

from msgspec import Meta

from .limits import MAX_ID_LENGTH, MAX_NAME_LENGTH, MAX_PARTS, MAX_TOOL_TIMEOUT_S

__all__ = [
    "KEY_SAFE_PATTERN",
    "Count",
    "HopCount",
    "HopLimit",
    "Id",
    "MaybeId",
    "MaybeName",
    "Name",
    "PartCount",
    "PartIndex",
    "Priority",
    "PRIORITIES",
    "ToolTimeout",
    "TraceParent",
    "TraceState",
]

KEY_SAFE_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]*$"
"""What a name or id may look like: safe inside a Redis key and a SCAN pattern."""

Name = Annotated[str, Meta(min_length=1, max_length=MAX_NAME_LENGTH, pattern=KEY_SAFE_PATTERN,
                           description="A workflow, role, agent or tool name (key-safe).")]
MaybeName = Annotated[str, Meta(max_length=MAX_NAME_LENGTH, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?$",
                                description="A key-safe name, or empty for none.")]
Id = Annotated[str, Meta(min_length=1, max_length=MAX_ID_LENGTH, pattern=KEY_SAFE_PATTERN,
                         description="A message or run id (key-safe).")]
MaybeId = Annotated[str, Meta(max_length=MAX_ID_LENGTH, pattern=r"^([A-Za-z0-9][A-Za-z0-9_.-]*)?$",
                              description="A key-safe id, or empty for none.")]
Count = Annotated[int, Meta(ge=0)]
HopCount = Annotated[int, Meta(ge=0, description="Handoffs taken so far.")]
HopLimit = Annotated[int, Meta(ge=1, description="Most handoffs the run may take.")]
PartIndex = Annotated[int, Meta(ge=0, lt=MAX_PARTS, description="A fan-out part, numbered from 0.")]
PartCount = Annotated[int, Meta(ge=1, le=MAX_PARTS, description="How many parts a fan-out has.")]
ToolTimeout = Annotated[float, Meta(gt=0, le=MAX_TOOL_TIMEOUT_S, description="Seconds a tool call may take.")]
TraceParent = Annotated[str, Meta(max_length=55, pattern=r"^([0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2})?$",
                                   description="A W3C Trace Context traceparent (version-trace_id-span_id-flags), "
                                               "or empty for none.")]
TraceState = Annotated[str, Meta(max_length=512, pattern=r"^[\x20-\x7e]*$",
                                  description="A W3C Trace Context tracestate (vendor entries), or empty.")]
Priority = Literal["interactive", "batch"]
"""A run's lane: ``interactive`` work is read before ``batch`` work (which still gets a fixed share)."""
PRIORITIES: tuple[Priority, ...] = get_args(Priority)
"""The lanes, most urgent first."""
