"""Scratchpad entries and long-term memory entries as stored, decoded once at the broker boundary.

A scratchpad is a hash per ``(run, agent)``: one field per processed message (its input entry
id), each value a JSON :class:`PadEntry` (the input task, the response, and :class:`PadMeta`:
who ran which message when, its tokens, tool calls, fan-out part, review, a handler's notes).
An agent's long-term memory holds :class:`MemoryEntry` values. The worker writes them with
:func:`encode_pad` / :func:`encode_memory`; every reader gets Structs from :func:`pad_rows` /
:func:`decode_memory` and reads attributes, never ``entry.get("meta")``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import msgspec

from .entry import entry_id_key
from .lenient import convert_lenient
from .text import as_text

__all__ = [
    "Memory",
    "MemoryEntry",
    "PadBatch",
    "PadEntry",
    "PadMeta",
    "PadTool",
    "decode_memory",
    "decode_pad",
    "encode_memory",
    "encode_pad",
    "pad_entries",
    "pad_rows",
]

log = logging.getLogger(__name__)


class PadTool(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call of a hop and its result (``PadMeta.tools``)."""

    tool: str
    args: dict[str, Any] = msgspec.field(default_factory=dict)
    output: str = ""
    error: str = ""
    call_id: str = ""
    where: str = "inline"
    """Where it ran: ``inline`` in the worker, ``remote`` on a tool worker, ``refused``, ``budget``..."""
    ms: float = 0.0


class PadBatch(msgspec.Struct, frozen=True, kw_only=True):
    """The cross-role batch a multi-role worker ran a hop in (``PadMeta.batch``)."""

    roles: list[str] = msgspec.field(default_factory=list)
    size: int = 0


class PadMeta(msgspec.Struct, frozen=True, kw_only=True):
    """Who ran one hop, when, and what it did beside generating."""

    msg_id: str = ""
    consumer: str = ""
    role: str = ""
    hop: int = 0
    started: float = 0.0
    finished: float = 0.0
    tokens: int = 0
    truncated: bool = False
    tools: list[PadTool] = msgspec.field(default_factory=list)
    batch: PadBatch | None = None
    part: int | None = None
    """The fan-out part this hop handled (with ``parts`` > 1 and ``group``)."""
    parts: int = 1
    group: str = ""
    review: str = ""
    """The id of the review this hop's output waited for, if it did."""
    scratchpad: dict[str, Any] = msgspec.field(default_factory=dict)
    """A code role's handler's own notes (``ctx.scratchpad``)."""


class PadEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One processed message in an agent's scratchpad: its input task, the response and ``meta``."""

    task: str = ""
    response: str = ""
    meta: PadMeta = msgspec.field(default_factory=PadMeta)


class MemoryEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One entry of an agent's long-term memory (kept across runs)."""

    task: str = ""
    response: str = ""
    at: float = 0.0


Memory = PadEntry | MemoryEntry
"""One entry of the memory a prompt shows: the run's scratchpad or the agent's long-term memory."""

_encoder = msgspec.json.Encoder()
_pad_decoder = msgspec.json.Decoder(PadEntry)
_memory_decoder = msgspec.json.Decoder(MemoryEntry)
_loose = msgspec.json.Decoder()


def encode_pad(entry: PadEntry) -> bytes:
    """A scratchpad entry as its hash field's JSON."""
    return _encoder.encode(entry)


def encode_memory(entry: MemoryEntry) -> bytes:
    """A long-term memory entry as its hash field's JSON."""
    return _encoder.encode(entry)


def decode_pad(raw: bytes | str) -> PadEntry:
    """A scratchpad entry from its JSON. One written by hand that does not match keeps its
    ``task`` and ``response`` (when they are text) and loses the ``meta`` that does not convert."""
    try:
        return _pad_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        pass  # read what converts, below
    try:
        loose = _loose.decode(raw)
    except msgspec.DecodeError:
        loose = None
    if not isinstance(loose, dict):
        log.warning("a scratchpad entry is not a JSON object; read as empty")
        return PadEntry()
    meta = loose.get("meta")
    text = {k: v for k, v in loose.items() if k != "meta"}
    return convert_lenient(text, PadEntry, {"meta": convert_lenient(meta if isinstance(meta, dict) else {}, PadMeta)})


def decode_memory(raw: bytes | str) -> MemoryEntry:
    """A long-term memory entry from its JSON (an unreadable one as an empty entry)."""
    try:
        return _memory_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        log.warning("malformed long-term memory entry (%s)", exc)
        return MemoryEntry()


def pad_rows(raw: Mapping[Any, Any]) -> list[tuple[str, PadEntry]]:
    """A scratchpad hash as ``(input entry id, entry)`` rows, oldest first."""
    rows = sorted(((as_text(k), v) for k, v in raw.items()), key=lambda kv: entry_id_key(kv[0]))
    return [(entry_id, decode_pad(value)) for entry_id, value in rows]


def pad_entries(raw: Mapping[Any, Any]) -> list[PadEntry]:
    """A scratchpad hash's entries, oldest first (none for a missing hash)."""
    return [entry for _, entry in pad_rows(raw)] if raw else []
