"""A run's event log: one Redis stream per run (``Keys.events``), one ``ev`` field per entry.

Every write trims the stream (``XADD ... MAXLEN ~ events_maxlen``) and renews its lifetime (``EXPIRE
events_ttl_s``), both from ``Keys.retention``, so a log is bounded in length and outlives its run by
``events_ttl_s`` at most. A generating worker's token chunks (``Tokens`` through ``append_batch``)
are the exception: they go only to a log that exists (``NOMKSTREAM``) and leave its lifetime as
the hop's ``hop_started``, just before them, and its commit, just after, set it (one command per
chunk instead of two; a chunk never creates a log without a lifetime). The entry id is
the event id: readers resume with ``after=<id>``. Hop and terminal events are also written by the
commit script (``broker/lua/commit.lua``) with the same field, trimming and expiry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

import redis
import redis.asyncio

from ..protocol import Event, ProtocolError, Tokens, decode_event, encode_event, is_terminal
from . import direct
from .keys import Keys
from .retention import DEFAULT_EVENTS_MAXLEN
from .text import as_text

__all__ = [
    "DEFAULT_EVENTS_MAXLEN",
    "EVENT_FIELD",
    "AsyncRedis",
    "aiter_events",
    "append_batch",
    "append_events",
    "aread_events",
    "iter_events",
    "last_event",
    "read_events",
]

log = logging.getLogger(__name__)

EVENT_FIELD = "ev"
"""The field of an event-log entry that holds the encoded event."""

AsyncRedis: TypeAlias = redis.asyncio.Redis
"""The asyncio client type ``aread_events`` takes."""

EventEntry: TypeAlias = tuple[str, Event]


Command: TypeAlias = tuple[str | int | bytes, ...]


def _xadd(keys: Keys, key: str, payload: bytes, *, existing: bool = False) -> Command:
    """The trimmed ``XADD`` of ``payload`` to the log ``key``; ``existing``: only if the log exists."""
    return ("XADD", key, *(("NOMKSTREAM",) if existing else ()), "MAXLEN", "~", keys.retention.events_maxlen, "*",
            EVENT_FIELD, payload)


def _log_commands(keys: Keys, run_id: str, payloads: Sequence[bytes]) -> list[Command]:
    """The commands that append ``payloads`` to ``run_id``'s log: an ``XADD`` each (trimmed), then
    the log's ``EXPIRE``."""
    key = keys.events(run_id)
    return [*(_xadd(keys, key, p) for p in payloads), ("EXPIRE", key, keys.retention.events_ttl_s)]


def _send(client: redis.Redis, commands: Sequence[Command]) -> None:
    """``commands`` in one pipelined round trip on the held connection (``broker.direct``); the
    first one refused is raised."""
    for reply in direct.pipeline(client, commands) if commands else ():
        if isinstance(reply, Exception):
            raise reply


def append_events(
    client_or_pipeline: redis.Redis | redis.client.Pipeline | redis.asyncio.client.Pipeline,
    keys: Keys,
    run_id: str,
    events: Iterable[Event | bytes],
) -> None:
    """Append ``events`` (Structs, or bytes from ``encode_event``) to the log of ``run_id``, trimmed
    and kept as ``keys.retention`` says.

    Given a pipeline, the XADDs and the EXPIRE are queued on it and the caller executes it (so
    they can share a caller's MULTI); given a client, they go out in one pipelined round trip.
    """
    payloads = [e if isinstance(e, bytes) else encode_event(e) for e in events]
    if not payloads:
        return
    commands = _log_commands(keys, run_id, payloads)
    if isinstance(client_or_pipeline, redis.client.Pipeline | redis.asyncio.client.Pipeline):
        for command in commands:  # (an asyncio pipeline of an op: its caller executes it)
            client_or_pipeline.execute_command(*command)
    else:
        _send(client_or_pipeline, commands)


def append_batch(
    client: redis.Redis,
    keys: Keys,
    events: Sequence[Event],
) -> None:
    """Append ``events`` of any runs (each to its own run's log, in order) in one pipelined round trip
    (a worker's live events: on the held connection). Token chunks (``Tokens``) are added only to a
    log that exists and do not renew its lifetime (the module's docstring says why); the other
    events renew it, as ``append_events`` does."""
    commands: list[Command] = []
    renewed: dict[str, None] = {}
    for event in events:
        key = keys.events(event.run_id)
        chunk = isinstance(event, Tokens)
        commands.append(_xadd(keys, key, encode_event(event), existing=chunk))
        if not chunk:
            renewed[key] = None
    _send(client, [*commands, *(("EXPIRE", key, keys.retention.events_ttl_s) for key in renewed)])


class _Read:
    """One read of a run's log, without I/O: the command to send and how to decode its reply.
    ``read_events`` sends it on a client, ``aread_events`` awaits it on an asyncio client."""

    def __init__(self, keys: Keys, run_id: str, after: str | None, block_ms: int | None, count: int) -> None:
        self.run_id, self.key = run_id, keys.events(run_id)
        self.after, self.block_ms, self.count = after, block_ms, count

    def send(self, client: redis.Redis | AsyncRedis) -> Any:
        """The reply of a sync client, or the awaitable of an asyncio one."""
        if self.block_ms is None:
            return client.xrange(self.key, min=f"({self.after}" if self.after else "-", count=self.count)
        return client.xread({self.key: self.after or "0-0"}, count=self.count, block=max(1, self.block_ms))

    def decode(self, reply: Any) -> list[EventEntry]:
        """The events of ``reply``; entries that do not decode are skipped (logged)."""
        if self.block_ms is not None:
            reply = reply[0][1] if reply else []
        out: list[EventEntry] = []
        for entry_id, fields in reply:
            raw = fields.get(EVENT_FIELD.encode()) if isinstance(fields, dict) else None
            if raw is None:
                continue
            try:
                out.append((as_text(entry_id), decode_event(raw)))
            except ProtocolError as exc:
                log.warning("skipping unreadable event %s of run %s: %s", as_text(entry_id), self.run_id, exc)
        return out


class _Follow:
    """Where a reader of a run's log stands: the read to make next, and whether it is over (a
    terminal event was seen, or the log ended without ``follow``)."""

    def __init__(self, after: str | None, block_ms: int, follow: bool) -> None:
        self.after, self.block_ms, self.follow, self.over = after, block_ms, follow, False

    def read(self, keys: Keys, run_id: str) -> _Read:
        return _Read(keys, run_id, self.after, self.block_ms if self.follow else None, 100)

    def take(self, batch: list[EventEntry]) -> Iterator[EventEntry]:
        if not batch and not self.follow:
            self.over = True
        for entry_id, event in batch:
            self.after = entry_id
            yield entry_id, event
            if is_terminal(event):
                self.over = True
                return


def read_events(
    client: redis.Redis,
    keys: Keys,
    run_id: str,
    *,
    after: str | None = None,
    block_ms: int | None = None,
    count: int = 100,
) -> list[EventEntry]:
    """Up to ``count`` events of ``run_id`` after event id ``after`` (from the start when None).

    With ``block_ms``, wait up to that long for new events when there are none yet; an empty list
    means none arrived. Entries that do not decode are skipped (logged).
    """
    read = _Read(keys, run_id, after, block_ms, count)
    return read.decode(read.send(client))


def last_event(client: redis.Redis, keys: Keys, run_id: str) -> EventEntry | None:
    """The newest event of ``run_id`` (a terminal one once the run ended); None when its log is empty."""
    read = _Read(keys, run_id, None, None, 1)
    found = read.decode(client.xrevrange(read.key, count=1))
    return found[0] if found else None


async def aread_events(
    aclient: AsyncRedis,
    keys: Keys,
    run_id: str,
    *,
    after: str | None = None,
    block_ms: int | None = None,
    count: int = 100,
) -> list[EventEntry]:
    """``read_events`` for a ``redis.asyncio`` client."""
    read = _Read(keys, run_id, after, block_ms, count)
    return read.decode(await read.send(aclient))


def iter_events(
    client: redis.Redis,
    keys: Keys,
    run_id: str,
    *,
    after: str | None = None,
    block_ms: int = 1000,
    follow: bool = True,
) -> Iterator[EventEntry]:
    """Yield the events of ``run_id`` after ``after``; live (``follow``) until a terminal event.

    Without ``follow`` it stops at the end of the log as it is now.
    """
    cursor = _Follow(after, block_ms, follow)
    while not cursor.over:
        read = cursor.read(keys, run_id)
        yield from cursor.take(read.decode(read.send(client)))


async def aiter_events(
    aclient: AsyncRedis,
    keys: Keys,
    run_id: str,
    *,
    after: str | None = None,
    block_ms: int = 1000,
    follow: bool = True,
) -> AsyncIterator[EventEntry]:
    """``iter_events`` for a ``redis.asyncio`` client."""
    cursor = _Follow(after, block_ms, follow)
    while not cursor.over:
        read = cursor.read(keys, run_id)
        for item in cursor.take(read.decode(await read.send(aclient))):
            yield item
