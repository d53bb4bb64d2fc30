"""Reserved interactive capacity: a worker that serves lone interactive runs and never holds a flood.

A worker started with ``baton worker ROLE --reserve interactive`` (``BATON_WORKER_RESERVE``) reads
the role's interactive lane only, and of it only the streams of tenants without a backlog. Each read
takes at most ``PROBE`` entries of each stream (``XREADGROUP``'s ``COUNT`` is per stream); a stream
that gave that many has more waiting, so its tenant (``""``: runs of no tenant) counts as flooding
and is left to the shared workers for ``BUSY_S``, then looked at again. So a reserved worker's model
call holds at most ``PROBE`` tasks of a flooding tenant, once every ``BUSY_S``, and a task of a tenant
with nothing queued is read at once, however long another tenant's backlog or the batch lane is:
it never waits behind a flood's batch of 32 in the model call. The shared workers (no ``--reserve``)
serve every lane and tenant as before, so reserved workers add capacity for the quiet tenants and
take none from the busy one (past the CPU they share; ``--nice`` on the shared workers gives the
reserved ones the CPU first: docs/OPERATIONS.md, "Reserved interactive capacity").
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .keys import DEFAULT_LANE, Keys

if TYPE_CHECKING:
    from .entry import Entry
    from .lanes import ReadNew

__all__ = ["BUSY_S", "PROBE", "RESERVES", "ReservedRead"]

RESERVES = ("interactive",)
"""What a worker's capacity may be reserved for (``BATON_WORKER_RESERVE``; empty: not reserved)."""

PROBE = 4
"""Most entries a reserved worker reads of one stream per read; a stream that gave this many counts
as a backlog (its tenant flooding)."""

BUSY_S = 5.0
"""How long a reserved worker leaves a flooding tenant to the shared workers before looking again."""


class ReservedRead:
    """A ``ReadNew`` for a reserved worker: the interactive streams of tenants not flooding, at most
    ``probe`` entries of each."""

    def __init__(self, read: ReadNew, keys: Keys, *, probe: int = PROBE, busy_s: float = BUSY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if probe < 1:
            raise ValueError(f"a reserved worker's probe must be at least 1, not {probe}")
        self.read = read
        self.keys = keys
        self.probe = probe
        self.busy_s = busy_s
        self.clock = clock
        self.flooding: dict[str, float] = {}
        """Tenant -> until when (``clock``) it is left to the shared workers."""
        self._names: dict[str, tuple[str, bool] | None] = {}

    def __call__(self, streams: Sequence[str], count: int, block_ms: int | None) -> list[Entry]:
        now = self.clock()
        mine = self.streams(streams, now)
        if not mine:  # every tenant with interactive streams is flooding: wait as a blocking read would
            if block_ms:
                time.sleep(min(block_ms / 1000, max(0.0, min(self.flooding.values(), default=now) - now)))
            return []
        got = self.read(mine, min(count, self.probe), block_ms)
        per_stream: dict[str, int] = {}
        for e in got:
            per_stream[e.stream] = per_stream.get(e.stream, 0) + 1
        for stream, n in per_stream.items():
            if n >= self.probe and (name := self._name(stream)) is not None:
                self.flooding[name[0]] = now + self.busy_s
        return got

    def streams(self, streams: Sequence[str], now: float) -> list[str]:
        """Those of ``streams`` a reserved worker reads now: interactive lane, tenant not flooding."""
        for tenant in [t for t, until in self.flooding.items() if until <= now]:
            del self.flooding[tenant]
        return [s for s in streams if (name := self._name(s)) is not None and name[1] and name[0] not in self.flooding]

    def eligible(self, stream: str) -> bool:
        """Whether ``stream`` is an interactive task stream (what a reserved worker may ever serve)."""
        name = self._name(stream)
        return name is not None and name[1]

    def _name(self, stream: str) -> tuple[str, bool] | None:
        """The tenant of ``stream`` and whether it is the interactive lane (None: no task stream)."""
        if stream not in self._names:
            name = self.keys.parse_stream(stream)
            self._names[stream] = None if name is None else (name.tenant, name.lane == DEFAULT_LANE)
        return self._names[stream]
