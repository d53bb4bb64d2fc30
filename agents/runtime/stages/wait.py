"""The wait stage of a code role: handlers that sleep or wait for a signal park their tasks.

``batch.waiting`` holds the items whose handler suspended (``agents/runtime/timers.Suspend``); each
is parked in one atomic step (``broker.timers.park_waits``): its entry acked, the wait stored and
indexed, the run ``waiting``. The worker goes on with other work; a ticker or a signal puts the task
back on the role's stream and its handler runs again, replaying its journaled calls.
"""

from __future__ import annotations

import logging

from ....broker.timers import WaitPark, park_waits
from ..logs import bind
from ..role import RoleRuntime
from ..work import Batch

__all__ = ["ParkWaits"]

log = logging.getLogger("baton.worker")

_SAID = {1: "parked: %s", 3: "resumed at once by a buffered signal: %s", 2: "not parked (its run has ended): %s",
         0: "not parked (the entry was reclaimed by another worker): %s"}


class ParkWaits:
    """Parks the batch's waiting items (one step each)."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        if not batch.waiting:
            return
        rt = self.rt
        parks = [WaitPark(entry=item.entry, task=item.task, role=rt.spec.role, kind=w.kind, seq=w.seq, fp=w.fp,
                          hop=w.hop, name=w.name, until=w.until) for item, w in batch.waiting]
        rt.events.flush()  # the hop's earlier events go before its 'waiting'
        outcomes = rt.ride_out_redis(lambda: park_waits(rt.client, rt.keys, rt.streams.group, rt.consumer, parks),
                                     "parking a wait")
        for p, code in zip(parks, outcomes, strict=True):
            with bind(run_id=p.task.run_id, msg_id=p.task.id):
                what = f"{p.kind} {p.name}".strip() + (f" until {p.until:.3f}" if p.until is not None else "")
                log.info("hop %d " + _SAID.get(code, f"park returned {code}: %s"), p.task.hop, what)
