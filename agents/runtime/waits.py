"""The model-call hook that marks the entries a call holds while it waits (``broker/waits.py``).

A worker waits with a batch in two places: between tries of a model call during an outage (the
breaker's back-off, ``outages.ModelCalls``) and for its model's rate limit (``ratelimits``). Both
call :func:`waiting` before they sleep and :func:`running` before the model is called again; the
entries are those of the :class:`HeldWait` the model call set with :func:`holding` (a context
variable: the limiter is reached through the call, in the same thread). Outside a model call the
two are no-ops. Admission reads the marks back (``broker.waits.waited_deliveries``) and does not
count those deliveries toward ``max_deliveries``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

from ...broker import BrokerError, Entry, Keys, Redis
from ...broker.waits import mark_running, mark_waiting

__all__ = ["HeldWait", "holding", "running", "waiting"]

log = logging.getLogger("baton.worker")

T = TypeVar("T")
RideOut = Callable[[Callable[[], T], str], T]
"""``RoleRuntime.ride_out_redis``: run a Redis step, retrying it while Redis is out."""


class HeldWait:
    """The entries one model call holds, and whether their deliveries are marked as waiting."""

    def __init__(self, client: Redis, keys: Keys, entries: Sequence[Entry], ride_out: RideOut[None],
                 run_ids: Sequence[str] = ()) -> None:
        self.client = client
        self.keys = keys
        self.entries = list(entries)
        self.run_ids = list(run_ids)
        """The entries' runs: each wait renews their record's lifetime (``BATON_RECORD_TTL_S``)."""
        self.ride_out = ride_out
        self.marked = False

    def waiting(self) -> None:
        """Mark the entries' deliveries as spent waiting (once per wait) and renew their runs'
        records. A mark Redis refuses is skipped: the delivery then counts, as it did before marks existed."""
        if self.marked or not self.entries:
            return
        try:
            mark_waiting(self.client, self.keys, self.entries, self.run_ids)
        except BrokerError as exc:
            log.warning("could not mark %d held entries as waiting (%s): a kill now uses a delivery",
                        len(self.entries), exc)
            return
        self.marked = True

    def running(self) -> None:
        """Take the marks back before the entries run; retried while Redis is out (a mark left
        standing would hide a poison message's attempt)."""
        if not self.marked:
            return
        self.ride_out(lambda: mark_running(self.client, self.keys, self.entries), "unmarking held entries")
        self.marked = False


_held: ContextVar[HeldWait | None] = ContextVar("baton_held_wait", default=None)


@contextmanager
def holding(held: HeldWait | None) -> Iterator[None]:
    """``held`` is the current model call's batch inside the block (in this thread)."""
    token = _held.set(held)
    try:
        yield
    finally:
        _held.reset(token)


def waiting() -> None:
    """The current model call is about to wait: mark its entries (no-op outside a model call)."""
    if (held := _held.get()) is not None:
        held.waiting()


def running() -> None:
    """The current model call goes on: take its entries' marks back (no-op outside a model call)."""
    if (held := _held.get()) is not None:
        held.running()

