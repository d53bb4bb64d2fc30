"""A run's event log: one Redis stream per run (``Keys.events``), one ``ev`` field per entry.

Every write trims the stream (``XADD ... MAXLEN ~ maxlen``) and renews its lifetime (``EXPIRE
ttl_s``), so a log is bounded in length and outlives its run by ``ttl_s`` at most. The entry id is
the event id: readers resume with ``after=<id>``. Hop and terminal events are also written by the
commit script (``broker/lua/commit.lua``) with the same field, trimming and expiry.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Iterator, Sequence
from typing import Any, TypeAlias

import redis
import redis.asyncio

from baton.broker.keys import MARKER_TTL_S, Keys
from baton.broker.text import as_text
from baton.protocol import Event, ProtocolError, decode_event, encode_event, is_terminal

__all__ = [
    "DEFAULT_EVENTS_MAXLEN",
    "EVENT_FIELD",
    "AsyncRedis",
    "aiter_events",
    "append_batch",
    "append_events",
    "aread_events",
    "iter_events",
    "read_events",
]

log = logging.getLogger(__name__)

EVENT_FIELD = "ev"
"""The field of an event-log entry that holds the encoded event."""

DEFAULT_EVENTS_MAXLEN = 10_000
"""Events kept per run unless ``BATON_EVENTS_MAXLEN`` says otherwise (trimming is approximate)."""

AsyncRedis: TypeAlias = redis.asyncio.Redis
"""The asyncio client type ``aread_events`` takes."""

EventEntry: TypeAlias = tuple[str, Event]


def append_events(
    client_or_pipeline: redis.Redis | redis.client.Pipeline,
    keys: Keys,
    run_id: str,
    events: Iterable[Event | bytes],
    *,
    maxlen: int = DEFAULT_EVENTS_MAXLEN,
    ttl_s: int = MARKER_TTL_S,
) -> None:
    """Append ``events`` (Structs, or bytes from ``encode_event``) to the log of ``run_id``.

    Given a pipeline, the XADDs and the EXPIRE are queued on it and the caller executes it (so
    they can share a caller's MULTI); given a client, they go out in one pipelined round trip.
    """
    payloads = [e if isinstance(e, bytes) else encode_event(e) for e in events]
    if not payloads:
        return
    if isinstance(client_or_pipeline, redis.client.Pipeline):
        pipe, own = client_or_pipeline, False
    else:
        pipe, own = client_or_pipeline.pipeline(transaction=False), True
    key = keys.events(run_id)
    for payload in payloads:
        pipe.xadd(key, {EVENT_FIELD: payload}, maxlen=maxlen, approximate=True)
    pipe.expire(key, ttl_s)
    if own:
        pipe.execute()


def append_batch(
    client: redis.Redis,
    keys: Keys,
    events: Sequence[Event],
    *,
    maxlen: int = DEFAULT_EVENTS_MAXLEN,
    ttl_s: int = MARKER_TTL_S,
) -> None:
    """Append ``events`` of any runs (each to its own run's log, in order) in one pipelined round trip."""
    by_run: dict[str, list[Event]] = {}
    for event in events:
        by_run.setdefault(event.run_id, []).append(event)
    if not by_run:
        return
    pipe = client.pipeline(transaction=False)
    for run_id, run_events in by_run.items():
        append_events(pipe, keys, run_id, run_events, maxlen=maxlen, ttl_s=ttl_s)
    pipe.execute()


def _start(after: str | None) -> str:
    return after or "0-0"


def _decoded(run_id: str, items: Sequence[Any]) -> list[EventEntry]:
    out: list[EventEntry] = []
    for entry_id, fields in items:
        raw = fields.get(EVENT_FIELD.encode()) if isinstance(fields, dict) else None
        if raw is None:
            continue
        try:
            out.append((as_text(entry_id), decode_event(raw)))
        except ProtocolError as exc:
            log.warning("skipping unreadable event %s of run %s: %s", as_text(entry_id), run_id, exc)
    return out


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
    key = keys.events(run_id)
    if block_ms is None:
        items: Any = client.xrange(key, min=f"({after}" if after else "-", count=count)
        return _decoded(run_id, items)
    reply: Any = client.xread({key: _start(after)}, count=count, block=max(1, block_ms))
    return _decoded(run_id, reply[0][1]) if reply else []


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
    key = keys.events(run_id)
    if block_ms is None:
        items: Any = await aclient.xrange(key, min=f"({after}" if after else "-", count=count)
        return _decoded(run_id, items)
    reply: Any = await aclient.xread({key: _start(after)}, count=count, block=max(1, block_ms))
    return _decoded(run_id, reply[0][1]) if reply else []


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
    while True:
        batch = read_events(client, keys, run_id, after=after, block_ms=block_ms if follow else None)
        if not batch and not follow:
            return
        for entry_id, event in batch:
            after = entry_id
            yield entry_id, event
            if is_terminal(event):
                return


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
    while True:
        batch = await aread_events(aclient, keys, run_id, after=after, block_ms=block_ms if follow else None)
        if not batch and not follow:
            return
        for entry_id, event in batch:
            after = entry_id
            yield entry_id, event
            if is_terminal(event):
                return
