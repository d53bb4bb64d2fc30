"""The read loop every consumer runs: reclaim on a timer, own pending entries first, then new ones.

Role workers and tool workers both serve their group through ``ConsumerLoop``. A lost or
unreachable server and refused commands back off with a jittered exponential delay (cut short
by shutdown) and re-read the consumer's own pending entries afterwards; an ACL refusal
(``NOPERM``) is a misconfiguration and is raised rather than retried.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable

from .errors import UNREACHABLE, CommandRefused, is_noperm
from .streams import Entry, GroupStreams

__all__ = ["ConsumerLoop", "backoff_delay"]

log = logging.getLogger("baton.broker")

MAX_BACKOFF_S = 10.0
"""The longest wait between retries after broker errors."""


def backoff_delay(failures: int, base_s: float) -> float:
    """The jittered exponential delay after ``failures`` failures in a row (capped at 10 s)."""
    return min(MAX_BACKOFF_S, base_s * 2.0 ** min(failures, 6)) * random.uniform(0.5, 1.5)


class ConsumerLoop:
    """Serve one consumer's group until ``stopping`` is set.

    Every ``reclaim_interval_s`` the loop claims what dead consumers hold and what sat idle
    past ``lease_ms``; then it reads the consumer's own pending entries until there are none,
    then new ones (``count`` at a time, blocking up to ``block_ms``). ``handle`` gets each
    non-empty batch and returns True when it left entries pending for a retry.
    """

    def __init__(self, streams: GroupStreams, stopping: threading.Event, *, count: int, block_ms: int,
                 lease_ms: int, reclaim_interval_s: float, retry_backoff_s: float) -> None:
        self.streams = streams
        self.stopping = stopping
        self.count = count
        self.block_ms = block_ms
        self.lease_ms = lease_ms
        self.reclaim_interval_s = reclaim_interval_s
        self.retry_backoff_s = retry_backoff_s

    def read(self, pending: bool) -> list[Entry]:
        """One read: own pending entries (no blocking) or up to ``count`` new ones."""
        return self.streams.read(pending=pending, count=self.count, block_ms=self.block_ms)

    def run(self, handle: Callable[[list[Entry]], bool], *, read: Callable[[bool], list[Entry]] | None = None,
            on_reclaim: Callable[[int], None] | None = None) -> None:
        """Loop until stopped; ``read`` replaces ``self.read``, ``on_reclaim`` sees each reclaim count."""
        read = read or self.read
        pending, next_reclaim, failures = True, 0.0, 0
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    claimed = self.streams.reclaim(lease_ms=self.lease_ms)
                    if on_reclaim is not None:
                        on_reclaim(claimed)
                    pending = pending or claimed > 0
                    next_reclaim = time.monotonic() + self.reclaim_interval_s
                entries = read(pending)
                if pending and not entries:
                    pending = False
                    continue
                if entries:
                    pending = handle(entries) or pending
                failures = 0
            except UNREACHABLE as exc:
                failures += 1
                self.back_off(failures, "Redis unavailable", exc)
                pending = True
            except CommandRefused as exc:
                if is_noperm(exc):
                    raise  # a misconfigured ACL: fail loudly rather than spin
                failures += 1
                self.back_off(failures, "Redis refused a command", exc)
                pending = True

    def back_off(self, failures: int, problem: str, exc: Exception) -> None:
        """Log ``problem`` and wait a jittered exponential delay (cut short by shutdown)."""
        delay = backoff_delay(failures, self.retry_backoff_s)
        log.warning("%s (%s); retrying in %.1fs", problem, exc, delay)
        self.stopping.wait(delay)
