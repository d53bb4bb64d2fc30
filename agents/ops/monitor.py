"""Figures for watching a deployment: per role backlog, lag, pending, consumers, throughput.

A ``Monitor`` samples Redis; each ``Snapshot`` holds, per role of each workflow, the stream length, the group's
lag (entries never delivered) and pending entries (delivered, not yet acknowledged), its
consumers with idle time and heartbeat, and throughput: messages acknowledged per second since
the previous sample, computed as (delta delivered) - (delta pending). "Delivered" is Redis 7's
``entries-read`` counter of the group; on Redis 6.2 the monitor counts the entries between the
previous and the current ``last-delivered-id`` instead. Dead letters, runs by status, live
workers and each model's usage against its shared rate limits complete the picture.
``baton monitor``, the dashboard and its ``/metrics`` use it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from typing import Any

import msgspec

from ...broker import Heartbeat, Keys, Redis, live_workers
from ...broker.dlq import DeadEntry, count_dead, list_dead
from ...broker.ratelimit import usage
from ...broker.stats import (
    ConsumerStats,
    StreamStats,
    count_after,
    discover_streams,
    run_statuses,
    server_version,
    stream_stats,
)
from ...protocol import RunStatus

__all__ = ["ORIGINAL_SHOWN", "DeadLetterView", "ModelLimitFigures", "Monitor", "RoleFigures", "Snapshot",
           "dead_letter_views"]

log = logging.getLogger("baton.monitor")

IN_FLIGHT = (RunStatus.QUEUED, RunStatus.RUNNING)


class RoleFigures(msgspec.Struct, kw_only=True):
    """One role of one workflow, summed over its partition streams.

    ``delivered`` is a running count of deliveries to the group (absolute on Redis 7, counted
    from the monitor's start on Redis 6.2). ``throughput`` (msgs/s) and ``acked`` (messages
    acknowledged since the previous sample) are None on the first sample.
    """

    workflow: str
    role: str
    streams: list[str]
    length: int
    lag: int
    lag_exact: bool
    pending: int
    delivered: int
    consumers: list[ConsumerStats]
    acked: int | None = None
    throughput: float | None = None


class ModelLimitFigures(msgspec.Struct, kw_only=True):
    """One model endpoint's usage over the last minute against its shared limits (0 = unlimited):
    ``requests`` (prompts) and ``tokens`` (reserved, settled to the real count after each call)."""

    model: str
    rpm: int
    tpm: int
    requests: float
    tokens: float


ORIGINAL_SHOWN = 2000
"""How many characters of a dead letter's original message a view holds (``truncated`` says so)."""


class DeadLetterView(msgspec.Struct, kw_only=True):
    """A dead letter as shown to an operator: ``original`` holds at most ``ORIGINAL_SHOWN``
    characters of ``original_size``; ``readable`` is False when the entry could not be decoded."""

    entry_id: str
    role: str
    run_id: str
    reason: str
    stream: str
    source_entry: str
    attempts: int
    created_at: float
    original: str
    original_size: int
    truncated: bool
    readable: bool


class Snapshot(msgspec.Struct, kw_only=True):
    """Everything one sample saw; ``interval`` is the seconds since the previous sample."""

    at: float
    interval: float | None
    redis_version: str
    roles: list[RoleFigures]
    dead_letters: int
    dead_by_role: dict[str, int]
    recent_dead: list[DeadLetterView]
    runs: dict[str, int]
    runs_in_flight: int
    runs_done: int
    workers: list[Heartbeat]
    rate_limits: list[ModelLimitFigures] = []

    @property
    def model_down(self) -> list[dict[str, Any]]:
        """Workers whose model endpoint's circuit breaker is open: ``consumer``, ``role``, ``since``
        (epoch seconds) and ``outage_s`` (seconds spent in outages so far)."""
        return [{"consumer": w.consumer, "role": w.role, "since": w.model_down_since, "outage_s": w.outage_s}
                for w in self.workers if w.breaker not in ("", "closed")]

    @property
    def outage_s(self) -> float:
        """Seconds the live workers spent waiting on model outages, summed."""
        return float(sum(w.outage_s for w in self.workers))

    def to_builtins(self) -> dict[str, Any]:
        """The snapshot as JSON-ready builtins."""
        doc: dict[str, Any] = msgspec.to_builtins(self)
        doc |= {"model_down": self.model_down, "outage_s": self.outage_s}
        return doc


class _Prev(msgspec.Struct):
    delivered: int
    pending: int
    last_id: str


def dead_letter_views(entries: Iterable[DeadEntry]) -> list[DeadLetterView]:
    """Dead letters (from ``list_dead``) for display, originals cut to ``ORIGINAL_SHOWN`` characters."""
    views: list[DeadLetterView] = []
    for d in entries:
        msg = d.letter
        views.append(DeadLetterView(
            entry_id=d.id, role=msg.role, run_id=msg.run_id, reason=msg.reason, stream=msg.stream,
            source_entry=msg.entry_id, attempts=msg.attempts, created_at=msg.created_at,
            original=msg.original[:ORIGINAL_SHOWN], original_size=len(msg.original),
            truncated=len(msg.original) > ORIGINAL_SHOWN, readable=d.readable,
        ))
    return views


class Monitor:
    """Samples the figures of one deployment; keeps what it needs to compute throughput.

    ``roles`` (``(workflow, role)`` pairs) are always shown, even before their streams exist;
    other task streams, of any workflow, are found with SCAN at the first sample and every
    ``rescan_s`` seconds.
    """

    def __init__(self, client: Redis, keys: Keys, roles: Iterable[tuple[str, str]] = (), *,
                 rescan_s: float = 30.0, dead_limit: int = 1000, recent_dead: int = 10) -> None:
        self.client = client
        self.keys = keys
        self.roles = list(dict.fromkeys(roles))
        self.rescan_s = rescan_s
        self.dead_limit = dead_limit
        self.recent_dead = recent_dead
        self._streams: list[str] = []
        self._next_scan = 0.0
        self._prev: dict[tuple[str, str], _Prev] = {}
        self._prev_at: float | None = None
        self._version = ""

    def _stream_names(self) -> list[str]:
        now = time.monotonic()
        if now >= self._next_scan:
            known = [s for wf, role in self.roles for s in self.keys.streams(wf, role)]
            self._streams = list(dict.fromkeys(known + discover_streams(self.client, self.keys)))
            self._next_scan = now + self.rescan_s
            self._version = ".".join(map(str, server_version(self.client)))
        return self._streams

    def sample(self) -> Snapshot:
        """Read the current figures once."""
        names = self._stream_names()
        stats = stream_stats(self.client, self.keys, names)
        at = time.time()
        interval = None if self._prev_at is None else max(at - self._prev_at, 1e-6)
        roles = self._roles(stats, interval)
        self._prev_at = at
        total = count_dead(self.client, self.keys)
        views = dead_letter_views(list_dead(self.client, self.keys, limit=self.dead_limit, newest_first=True))
        by_role: dict[str, int] = {}
        for v in views:
            by_role[v.role or "?"] = by_role.get(v.role or "?", 0) + 1
        runs = run_statuses(self.client, self.keys)
        return Snapshot(
            at=at, interval=interval, redis_version=self._version, roles=roles,
            dead_letters=total, dead_by_role=by_role, recent_dead=views[: self.recent_dead],
            runs=runs, runs_in_flight=sum(runs.get(s, 0) for s in IN_FLIGHT), runs_done=runs.get(RunStatus.DONE, 0),
            workers=self._workers(), rate_limits=self._rate_limits(),
        )

    def _roles(self, stats: list[StreamStats], interval: float | None) -> list[RoleFigures]:
        by_role: dict[tuple[str, str], RoleFigures] = {}
        order = self.roles + sorted({(s.workflow, s.role) for s in stats} - set(self.roles))
        for wf, role in order:
            by_role[(wf, role)] = RoleFigures(workflow=wf, role=role, streams=[], length=0, lag=0, lag_exact=True,
                                              pending=0, delivered=0, consumers=[])
        acked: dict[tuple[str, str], int] = {}
        for s in stats:
            name = (s.workflow, s.role)
            fig = by_role[name]
            fig.streams.append(s.stream)
            fig.length += s.length
            for g in s.groups:
                if g.name != self.keys.group(s.role):
                    continue
                delivered = self._delivered(s.stream, g.name, g.entries_read, g.last_delivered_id)
                prev = self._prev.get((s.stream, g.name))
                self._prev[(s.stream, g.name)] = _Prev(delivered, g.pending, g.last_delivered_id)
                if prev is not None and delivered >= prev.delivered:
                    done = delivered - prev.delivered - (g.pending - prev.pending)
                    acked[name] = acked.get(name, 0) + max(0, done)
                fig.lag += g.lag
                fig.lag_exact = fig.lag_exact and g.lag_exact
                fig.pending += g.pending
                fig.delivered += delivered
                fig.consumers = _merge_consumers(fig.consumers, g.consumers)
        if interval is not None:
            for name, fig in by_role.items():
                fig.acked = acked.get(name, 0)
                fig.throughput = round(fig.acked / interval, 3)
        return list(by_role.values())

    def _delivered(self, stream: str, group: str, entries_read: int | None, last_id: str) -> int:
        if entries_read is not None:
            return entries_read
        prev = self._prev.get((stream, group))
        if prev is None:
            return 0
        if last_id == prev.last_id:
            return prev.delivered
        return prev.delivered + count_after(self.client, stream, prev.last_id, last_id)

    def _rate_limits(self) -> list[ModelLimitFigures]:
        return [ModelLimitFigures(model=u.model, rpm=u.rpm, tpm=u.tpm, requests=u.requests, tokens=u.tokens)
                for u in usage(self.client, self.keys)]

    def _workers(self) -> list[Heartbeat]:
        return sorted(live_workers(self.client, self.keys), key=lambda w: (w.role, w.consumer))


def _merge_consumers(a: list[ConsumerStats], b: list[ConsumerStats]) -> list[ConsumerStats]:
    merged = {c.name: ConsumerStats(name=c.name, pending=c.pending, idle_ms=c.idle_ms, alive=c.alive) for c in a}
    for c in b:
        if c.name in merged:
            m = merged[c.name]
            m.pending += c.pending
            m.idle_ms = min(m.idle_ms, c.idle_ms)
            m.alive = m.alive or c.alive
        else:
            merged[c.name] = ConsumerStats(name=c.name, pending=c.pending, idle_ms=c.idle_ms, alive=c.alive)
    return sorted(merged.values(), key=lambda c: c.name)
