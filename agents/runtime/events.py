"""The events a worker writes to its runs' logs.

Hop and terminal events (``hop_finished``, ``done``, ``failed``) are built here and committed
with the handoff they describe (``Handoff.events``): they are written exactly when the handoff
is, never twice. ``hop_started``, ``tool_call``, ``tool_result`` and ``tokens`` go through an
:class:`EventWriter`: best effort, one pipelined round trip per call, failures logged and never
raised (an event lost is a gap in the log, not a failed hop). Events that need no round trip of
their own (a hop's ``hop_started``, its last ``tokens`` chunk) are *staged*: they go out with the
writer's next write, or ride in the commit of their run's handoff (``take``), in order, before
the hop's ``hop_finished``.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping, Sequence

from ...broker import BrokerError, Keys, Redis, append_batch
from ...protocol import Done, Event, Failed, HopFinished, RunStatus, Task, encode_event
from ..workflow.spec import RoleSpec

__all__ = ["EventWriter", "failed_events", "hop_events"]

log = logging.getLogger("baton.worker")


class EventWriter:
    """Best-effort writer of a worker's live events, with the deployment's retention (``keys.retention``)."""

    def __init__(self, client: Redis, keys: Keys) -> None:
        self.client = client
        self.keys = keys
        self._warned = False
        self._staged: dict[str, list[Event]] = {}
        """Staged events by run (a batch's commits each take their run's at once)."""
        self._lock = threading.Lock()

    def stage(self, events: Sequence[Event]) -> None:
        """Keep ``events`` for the next write: ``emit``, ``flush`` or a commit that ``take``s them."""
        with self._lock:
            for e in events:
                self._staged.setdefault(e.run_id, []).append(e)

    def take(self, run_id: str) -> list[bytes]:
        """The staged events of ``run_id``, encoded and no longer staged (for its commit to write)."""
        with self._lock:
            mine = self._staged.pop(run_id, None) if self._staged else None
        return [encode_event(e) for e in mine] if mine else []

    def flush(self) -> bool:
        """Write what is staged (nothing to do, no round trip)."""
        return self.emit([])

    def emit(self, events: Sequence[Event]) -> bool:
        """Append the staged events, then ``events`` (of any runs), in one round trip; False
        (logged) when Redis refused."""
        with self._lock:
            staged, self._staged = self._staged, {}
        events = [*(e for run in staged.values() for e in run), *events]
        if not events:
            return True
        try:
            append_batch(self.client, self.keys, events)
        except BrokerError as exc:
            level = logging.DEBUG if self._warned else logging.WARNING
            log.log(level, "could not write %d run events (best effort, the run goes on): %s", len(events), exc)
            self._warned = True
            return False
        self._warned = False
        return True


def hop_events(
    spec: RoleSpec, task: Task, *, consumer: str, started: float, finished: float, tokens: int, output: str,
    record: Mapping[str, object],
) -> list[bytes]:
    """The committed events of one handoff: ``hop_finished``, and ``done`` when it ends the run."""
    run_id, role, agent, hop = task.run_id, spec.role, spec.agent, task.hop
    events = [encode_event(HopFinished(run_id=run_id, at=finished, role=role, agent=agent, hop=hop, msg_id=task.id,
                                       consumer=consumer, tokens=tokens, started=started, finished=finished,
                                       output=output))]
    if record.get("status") == RunStatus.DONE:
        events.append(encode_event(Done(run_id=run_id, at=finished, role=role, agent=agent, hop=hop, output=output)))
    return events


def failed_events(run_id: str, role: str, reason: str, at: float, *, hop: int = 0) -> list[bytes]:
    """The committed terminal event of a run that failed in ``role`` for ``reason``."""
    return [encode_event(Failed(run_id=run_id, at=at, role=role, hop=hop, reason=reason))]
