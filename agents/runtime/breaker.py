"""A circuit breaker per model endpoint, and the budget that bounds how long a run waits on an outage.

:class:`CircuitBreaker` is pure logic over injected clocks. Closed, every call is allowed; a
transient failure makes the next try wait a jittered exponential back-off (or the server's
``Retry-After``, whichever is longer). After ``threshold`` consecutive transient failures the
breaker opens: the worker stops reading new work and only probes the endpoint, one call per
back-off, half-open while the probe runs. A success closes it. The back-off is capped low
(``cap_s``, 4 s by default): however long the outage was, an endpoint that is back is found
within a few seconds, not after a long back-off that can miss a short recovery (a probe of a down
endpoint is cheap: a refused connection or a 503; ``Retry-After`` still lengthens a wait).
``opened_at`` (wall clock) says since when the endpoint is down, ``open_seconds`` how long it was
down in all.

:class:`OutageBudget` tracks one outage a batch is waiting on and says when a run must fail for
it: after ``BATON_OUTAGE_BUDGET_S`` of outage, or at the task's deadline, whichever comes first.
"""

from __future__ import annotations

import enum
import random
import time
from collections.abc import Callable

__all__ = ["BreakerState", "CircuitBreaker", "OutageBudget"]

Clock = Callable[[], float]


class BreakerState(enum.StrEnum):
    """Where a breaker is: calls flow, calls stopped, or one probe allowed."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    """Closed -> open after ``threshold`` consecutive transient failures -> half-open probes -> closed.

    Args:
        endpoint: what it guards (a model URL or name), for messages.
        threshold: consecutive transient failures that open it.
        base_s: the first back-off; each further failure doubles it.
        cap_s: the longest back-off (so the longest an endpoint that is back goes unnoticed).
        jitter: the fraction of a back-off drawn at random (0.5: between half and all of it).
        clock: monotonic seconds, for waits.
        wall: epoch seconds, for ``opened_at``.
        rng: the jitter's random source.
    """

    def __init__(self, endpoint: str, *, threshold: int = 3, base_s: float = 0.5, cap_s: float = 4.0,
                 jitter: float = 0.5, clock: Clock = time.monotonic, wall: Clock = time.time,
                 rng: random.Random | None = None) -> None:
        if threshold < 1 or base_s <= 0 or cap_s < base_s or not 0 <= jitter <= 1:
            raise ValueError(f"bad breaker settings: threshold={threshold} base_s={base_s} cap_s={cap_s} "
                             f"jitter={jitter}")
        self.endpoint = endpoint
        self.threshold = threshold
        self.base_s = base_s
        self.cap_s = cap_s
        self.jitter = jitter
        self._clock = clock
        self._wall = wall
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not cryptography
        self._state = BreakerState.CLOSED
        self.failures = 0
        """Consecutive transient failures (0 after a success)."""
        self.last_error = ""
        """The cause of the last transient failure, for logs and outage reasons."""
        self.opened_at: float | None = None
        """Wall-clock time the breaker opened (None while closed)."""
        self._opened_mono: float | None = None
        self._closed_open_s = 0.0
        self._retry_at = 0.0

    @property
    def state(self) -> BreakerState:
        """The current state."""
        return self._state

    @property
    def is_open(self) -> bool:
        """Whether the endpoint is considered down (open or half-open): read no new work."""
        return self._state is not BreakerState.CLOSED

    @property
    def open_seconds(self) -> float:
        """Seconds spent open in all, the current outage included."""
        current = self._clock() - self._opened_mono if self._opened_mono is not None else 0.0
        return self._closed_open_s + current

    def wait_s(self) -> float:
        """Seconds until :meth:`allow` says yes (0 when a call may go now)."""
        return max(0.0, self._retry_at - self._clock())

    def allow(self) -> bool:
        """Whether a call may go now; an open breaker whose back-off is over turns half-open (a probe)."""
        if self.wait_s() > 0:
            return False
        if self._state is BreakerState.OPEN:
            self._state = BreakerState.HALF_OPEN
        return True

    def record_success(self) -> None:
        """The endpoint answered (with a result or a final refusal): close."""
        if self._opened_mono is not None:
            self._closed_open_s += self._clock() - self._opened_mono
        self._state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = self._opened_mono = None
        self._retry_at = 0.0

    def record_failure(self, cause: str = "", retry_after: float | None = None) -> None:
        """A transient failure: back off (at least ``retry_after``), open after ``threshold`` in a row."""
        self.failures += 1
        self.last_error = cause or self.last_error
        if self._state is BreakerState.CLOSED and self.failures >= self.threshold:
            self._state = BreakerState.OPEN
            self.opened_at = self._wall()
            self._opened_mono = self._clock()
        elif self._state is BreakerState.HALF_OPEN:
            self._state = BreakerState.OPEN
        self._retry_at = self._clock() + max(self.backoff_s(self.failures), retry_after or 0.0)

    def backoff_s(self, failures: int) -> float:
        """The jittered back-off after ``failures`` consecutive failures, never above ``cap_s``."""
        full = min(self.cap_s, self.base_s * 2.0 ** min(max(failures - 1, 0), 32))
        return full * self._rng.uniform(1 - self.jitter, 1.0)

    def __repr__(self) -> str:
        return f"CircuitBreaker({self.endpoint!r}, state={self._state.value}, failures={self.failures})"


class OutageBudget:
    """How long one batch may wait on an outage before its runs fail, and the reason they then fail with.

    Args:
        budget_s: the longest outage a run waits out (``BATON_OUTAGE_BUDGET_S``).
        what: the thing that is down, as the reason names it (``"model endpoint"``, ``"Redis"``).
        clock: epoch seconds (task deadlines are epoch seconds).
    """

    def __init__(self, budget_s: float, *, what: str = "model endpoint", clock: Clock = time.time) -> None:
        if budget_s < 0:
            raise ValueError(f"outage budget must be >= 0 seconds, got {budget_s}")
        self.budget_s = budget_s
        self.what = what
        self._clock = clock
        self.started: float | None = None
        """When the current outage began (None when there is none)."""
        self.cause = ""
        """The last failure seen in the current outage."""

    @property
    def active(self) -> bool:
        """Whether an outage is being waited on."""
        return self.started is not None

    def note(self, cause: str) -> None:
        """A transient failure: start the outage clock (once) and remember the cause."""
        if self.started is None:
            self.started = self._clock()
        self.cause = cause

    def end(self) -> float:
        """The outage is over; return the seconds it lasted (0 if there was none)."""
        waited = self.waited_s()
        self.started, self.cause = None, ""
        return waited

    def waited_s(self) -> float:
        """Seconds into the current outage."""
        return 0.0 if self.started is None else max(0.0, self._clock() - self.started)

    def give_up_at(self, deadline: float | None = None) -> float | None:
        """Epoch time at which a run with ``deadline`` must fail for this outage (None: no outage)."""
        if self.started is None:
            return None
        limit = self.started + self.budget_s
        return limit if deadline is None else min(limit, deadline)

    def remaining_s(self, deadline: float | None = None) -> float:
        """Seconds a run with ``deadline`` may still wait (the budget when there is no outage yet)."""
        at = self.give_up_at(deadline)
        if at is None:
            return self.budget_s if deadline is None else max(0.0, min(self.budget_s, deadline - self._clock()))
        return max(0.0, at - self._clock())

    def exhausted(self, deadline: float | None = None) -> str:
        """The reason a run with ``deadline`` fails now, or ``""`` while it may wait on.

        E.g. ``"model endpoint unreachable for 600 s: connection refused"``.
        """
        at = self.give_up_at(deadline)
        if at is None or self._clock() < at:
            return ""
        by_deadline = deadline is not None and self.started is not None and deadline < self.started + self.budget_s
        cut = " (the run's deadline passed)" if by_deadline else ""
        return f"{self.what} unreachable for {self.waited_s():.0f} s{cut}: {self.cause or 'unknown cause'}"
