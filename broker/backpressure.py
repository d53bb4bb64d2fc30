"""Backpressure: refuse a submit, rather than grow Redis without bound, when a role is too far behind
or Redis is full.

A role's **backlog** is the lag of its consumer group summed over its task streams
(``Keys.streams``): how many entries were published and never yet delivered to a worker. Redis 7
reports it in ``XINFO GROUPS`` (O(1) per stream); where it cannot (Redis 6.2, or deleted entries
ahead of the group) the undelivered entries are counted with ``XRANGE``, at most ``limit`` of them.
:func:`check_backlog` raises :class:`BacklogFull` when the backlog is at or over the limit.

The check is cheap and approximate. A process reads the backlog at most once per
:data:`BACKLOG_CACHE_S` while it stays under the limit, adding the submits it admitted since the
read; a submit the estimate would refuse reads it again first, so a refusal always rests on a
fresh figure. Processes do not see each other's admits between reads, so concurrent submitters
can overshoot the limit by about what they submit within :data:`BACKLOG_CACHE_S` (and by the
submits racing between a read and their ``XADD``).

``Retry-After`` (``retry_after_s``) is the time the role's recent drain rate (the growth of its
group's ``entries-read`` between two reads) takes to bring the backlog under the limit, between
1 and :data:`MAX_RETRY_AFTER_S` seconds; :data:`DEFAULT_RETRY_AFTER_S` when the rate is unknown
or zero (no earlier read, Redis 6.2, no worker draining).

Redis at ``maxmemory`` under ``noeviction`` refuses writes with ``OOM``: :func:`refuse_when_full`
turns that into :class:`RedisFull` (still an ``OutOfMemoryError``, so it stays a transient outage
for ``errors.is_transient``). The submit's ``MULTI`` is refused as a whole: nothing is half written.
"""

from __future__ import annotations

import functools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import OutOfMemoryError

from .cache import PerClient
from .drive import Op, blocking
from .fairshare import tenant_streams_op
from .keys import Keys
from .stats import COUNT_CAP, count_after_op
from .text import as_text

__all__ = [
    "BACKLOG_CACHE_S",
    "DEFAULT_RETRY_AFTER_S",
    "MAX_RETRY_AFTER_S",
    "BacklogFull",
    "BacklogRead",
    "RedisFull",
    "SubmitRefused",
    "check_backlog",
    "check_backlog_op",
    "read_backlog",
    "read_backlog_op",
    "refuse_when_full",
    "refuse_when_full_op",
]

BACKLOG_CACHE_S = 1.0
"""How long a process trusts its last backlog read while it stays under the limit."""

DEFAULT_RETRY_AFTER_S = 5
"""Retry-After when the drain rate is unknown, and when Redis is full."""

MAX_RETRY_AFTER_S = 60
"""Longest Retry-After a refusal suggests."""

P = ParamSpec("P")
T = TypeVar("T")


class SubmitRefused(Exception):
    """A submit was refused for now (nothing written); retry after ``retry_after_s`` seconds."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"{reason}; retry in {retry_after_s} s")
        self.reason = reason
        self.retry_after_s = retry_after_s


class BacklogFull(SubmitRefused):
    """The entry role's backlog is at or over its limit (``BATON_MAX_BACKLOG`` or the role's ``max_backlog``)."""

    def __init__(self, workflow: str, role: str, backlog: int, limit: int, retry_after_s: int) -> None:
        super().__init__(f"role {role!r} of workflow {workflow!r} is {backlog} tasks behind "
                         f"(limit {limit}): submit refused", retry_after_s)
        self.workflow = workflow
        self.role = role
        self.backlog = backlog
        self.limit = limit


class RedisFull(SubmitRefused, OutOfMemoryError):
    """Redis is at ``maxmemory`` and refuses writes (``OOM`` under ``noeviction``): submit refused."""

    def __init__(self, retry_after_s: int = DEFAULT_RETRY_AFTER_S) -> None:
        super().__init__("Redis is out of memory (used memory > maxmemory, noeviction): submit refused", retry_after_s)


def refuse_when_full(submit: Callable[P, T]) -> Callable[P, T]:
    """Wrap a submitting function: Redis's ``OOM`` refusal is raised as :class:`RedisFull`."""
    @functools.wraps(submit)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return submit(*args, **kwargs)
        except RedisFull:
            raise
        except OutOfMemoryError as exc:
            raise RedisFull() from exc
    return wrapper


def refuse_when_full_op(make: Callable[P, Op[T]]) -> Callable[P, Op[T]]:
    """``refuse_when_full`` for an op (``broker.drive``) that submits."""
    @functools.wraps(make)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> Op[T]:
        try:
            return (yield from make(*args, **kwargs))
        except RedisFull:
            raise
        except OutOfMemoryError as exc:
            raise RedisFull() from exc
    return wrapper


@dataclass(frozen=True, slots=True)
class BacklogRead:
    """One read of a role's backlog: when, how many tasks undelivered, and how many ever delivered
    (``entries-read`` summed, None where Redis does not report it)."""

    at: float
    backlog: int
    delivered: int | None


def read_backlog_op(keys: Keys, workflow: str, role: str, cap: int = 0) -> Op[BacklogRead]:
    """The backlog of ``role`` of ``workflow`` now (its tenants' streams too): one pipelined ``XINFO
    GROUPS`` per stream.

    Where Redis reports no lag, the undelivered entries are counted, at most ``cap`` (0: up to
    ``stats.COUNT_CAP``) per stream.
    """
    streams = keys.streams(workflow, role) + (yield from tenant_streams_op(keys, workflow, role))
    pipe = yield lambda c: c.pipeline(transaction=False)
    for stream in streams:
        pipe.xinfo_groups(stream)
    replies: list[Any] = yield lambda _: pipe.execute(raise_on_error=False)
    group = keys.group(role)
    backlog, delivered = 0, 0
    known = True
    for stream, groups in zip(streams, replies, strict=True):
        if isinstance(groups, Exception):  # no such stream yet
            continue
        for g in groups:
            if as_text(g["name"]) != group:
                continue
            lag = g.get("lag")
            if lag is None:
                last = as_text(g.get("last-delivered-id", "0-0"))
                lag = yield from count_after_op(stream, last, cap=cap or COUNT_CAP)
            backlog += int(lag)
            read = g.get("entries-read")
            if read is None:
                known = False
            else:
                delivered += int(read)
    return BacklogRead(time.time(), backlog, delivered if known else None)


read_backlog = blocking(read_backlog_op)


RATE_WINDOW_S = 30.0
"""The drain rate is measured from a read at most about this old (and older than the last read)."""


class _Gate:
    """A process's view of one role's backlog: its last read, the submits admitted since, and an
    earlier read to measure the drain rate from."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.last: BacklogRead | None = None
        self.base: BacklogRead | None = None
        self.admitted = 0

    def estimate(self, now: float) -> int | None:
        """The backlog as this process believes it, while its last read is fresh enough."""
        if self.last is None or now - self.last.at >= BACKLOG_CACHE_S:
            return None
        return self.last.backlog + self.admitted

    def record(self, read: BacklogRead) -> BacklogRead:
        if self.base is None or read.at - self.base.at > RATE_WINDOW_S:
            self.base = self.last or read
        self.last, self.admitted = read, 0
        return read

    def retry_after(self, limit: int) -> int:
        """Seconds the recent drain rate takes to bring the backlog under ``limit``."""
        now, base = self.last, self.base
        if now is None or base is None or now.delivered is None or base.delivered is None:
            return DEFAULT_RETRY_AFTER_S
        span, drained = now.at - base.at, now.delivered - base.delivered
        if span <= 0 or drained <= 0:
            return DEFAULT_RETRY_AFTER_S
        excess = now.backlog - limit + 1
        return max(1, min(MAX_RETRY_AFTER_S, math.ceil(excess * span / drained)))


_gates: PerClient[tuple[str, str, str], _Gate] = PerClient(maxsize=1024)


def check_backlog_op(keys: Keys, workflow: str, role: str, limit: int) -> Op[None]:
    """Raise :class:`BacklogFull` when the backlog of ``role`` of ``workflow`` is at or over ``limit``
    (0: no limit, nothing read); otherwise count one more admitted submit. The read is made outside
    the gate's lock (an asyncio client awaits it), so racing submits may each read."""
    if limit <= 0:
        return
    gate: _Gate = yield lambda c: _gates.get(c, (keys.prefix, workflow, role), _Gate)
    with gate.lock:
        estimate = gate.estimate(time.time())
    if estimate is None or estimate >= limit:
        read = yield from read_backlog_op(keys, workflow, role, cap=limit)
        with gate.lock:
            estimate = gate.record(read).backlog
            if estimate >= limit:
                raise BacklogFull(workflow, role, estimate, limit, gate.retry_after(limit))
    with gate.lock:
        gate.admitted += 1


check_backlog = blocking(check_backlog_op)
