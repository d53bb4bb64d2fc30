"""A worker's CPU priority while it serves a backlog (``BATON_WORKER_NICE``).

A shared worker that serves a flood's batch competes for the same cores as a reserved worker's
interactive hop (``broker/reserve.py``). With ``worker_nice`` = N, the thread that runs the batches
lowers its CPU priority by N (``setpriority``; on Linux per thread) while it serves a batch of more
than ``PROBE`` tasks or of batch-lane tasks only, and takes its own priority back for the next small
batch, so a lone run it serves is not slowed. Lowering a priority is always allowed; taking it back
needs ``CAP_SYS_NICE`` or an ``RLIMIT_NICE`` that allows it: where neither is granted the worker
logs that once and stays at the lower priority (a static ``nice``).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence

from ...broker import Entry, Keys
from ...broker.keys import DEFAULT_LANE
from ...broker.reserve import PROBE

__all__ = ["BacklogNice"]

log = logging.getLogger("baton.worker")


class BacklogNice:
    """The batch thread's CPU priority: ``nice`` lower while it serves a backlog's batch."""

    def __init__(self, keys: Keys, nice: int, *, probe: int = PROBE) -> None:
        self.keys, self.nice, self.probe = keys, nice, probe
        self.base = os.getpriority(os.PRIO_PROCESS, 0) if nice else 0
        self.lowered = False
        self.stuck = False
        """Taking the priority back was refused: the thread stays lowered."""

    def serve(self, entries: Sequence[Entry]) -> None:
        """Set the calling thread's priority for a batch of ``entries`` (a system call only on a change)."""
        if not self.nice or self.stuck:
            return
        lower = self.backlog(entries)
        if lower == self.lowered:
            return
        try:
            os.setpriority(os.PRIO_PROCESS, 0, min(19, self.base + self.nice) if lower else self.base)
        except PermissionError:
            log.warning("cannot take the CPU priority back after a backlog's batch (no CAP_SYS_NICE or "
                        "RLIMIT_NICE): this worker stays %d lower", self.nice)
            self.stuck = True
            return
        self.lowered = lower

    def backlog(self, entries: Sequence[Entry]) -> bool:
        """Whether ``entries`` are a backlog's batch: more than ``probe`` of them, or batch lane only."""
        if len(entries) > self.probe:
            return True
        lanes = {n.lane if (n := self.keys.parse_stream(e.stream)) else DEFAULT_LANE for e in entries}
        return bool(entries) and DEFAULT_LANE not in lanes
