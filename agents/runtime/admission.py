"""Admission: which stream entries a role's worker may run, and the dead letter for the rest.

An entry is admitted when it decodes to a ``Task`` for this workflow and role within the hop limit and has
not used up its deliveries: those its workers spent waiting on an outage, a rate limit or a breaker
(``waited``, ``broker/waits.py``) do not count. Anything else is dead-lettered with a one-line reason: the dead
letter, the run's ``error`` result, its ``failed`` record and ``failed`` event in one atomic commit.
"""

from __future__ import annotations

import logging
import time

from ...broker import Entry, Handoff, Keys
from ...protocol import (
    DEAD_LETTER_MAX_BYTES,
    DeadLetter,
    Error,
    ProtocolError,
    RunStatus,
    Task,
    decode,
    encode,
    peek_ids,
)
from ..settings import Settings
from ..workflow.spec import RoleSpec
from .events import failed_events
from .logs import bind

__all__ = ["admit", "dead_letter"]

log = logging.getLogger("baton.worker")


def admit(entry: Entry, workflow: str, spec: RoleSpec, settings: Settings, waited: int = 0) -> tuple[str, Task | None]:
    """Return (reason to dead-letter, task); an empty reason admits the task. ``waited``: earlier
    deliveries whose worker waited (never ran the entry) when it died."""
    if entry.data is None:
        return "stream entry has no 'msg' field", None
    if entry.deliveries - waited > settings.max_deliveries:
        spent = f", {waited} of them spent waiting on an outage or a limit" if waited else ""
        return (
            f"delivered {entry.deliveries} times{spent} (max_deliveries={settings.max_deliveries}); "
            "the message failed or killed its worker every time",
            None,
        )
    try:
        msg = decode(entry.data)
    except ProtocolError as exc:
        return str(exc), None
    match msg:
        case Task() if msg.workflow != workflow:
            return f"task names workflow {msg.workflow!r}, but this worker runs {workflow!r}", msg
        case Task(role=role) if role != spec.role:
            return f"task for role {role!r} arrived on the stream of role {spec.role!r}", msg
        case Task(hop=hop) if hop >= (msg.max_hops or settings.max_hops):
            return f"run exceeded the hop limit ({hop} hops)", msg
        case Task():
            return "", msg
        case _:
            return f"unexpected message type {type(msg).__name__!r} on a task stream", None


def dead_letter(keys: Keys, role: str, entry: Entry, reason: str, task: Task | None, partition: int, *,
                fail_run: bool = True) -> Handoff:
    """The commit that moves ``entry`` to the dead-letter stream and fails its run (when known and
    ``fail_run``: not for an entry whose claims about its run cannot be trusted, e.g. a forged decision)."""
    raw = entry.data or b""
    run_id, msg_id = (task.run_id, task.id) if task else peek_ids(raw, limit=DEAD_LETTER_MAX_BYTES)
    with bind(run_id=run_id or "", msg_id=msg_id or ""):
        log.warning("dead-lettering entry %s of %s: %s", entry.id, entry.stream, reason)
    dl = DeadLetter(run_id=run_id or "", role=role, reason=reason, original=raw.decode("utf-8", "replace"),
                    stream=entry.stream, entry_id=entry.id, attempts=entry.deliveries)
    outputs = [(keys.dead(partition), encode(dl))]
    record: dict[str, str | float | int] = {}
    events: list[bytes] = []
    if fail_run and run_id and keys.partition(run_id) == partition:
        err = Error(run_id=run_id, role=role, reason=reason, tenant=task.tenant if task else "")
        outputs.append((keys.results(partition), encode(err)))
        now = time.time()
        record = {"status": RunStatus.FAILED, "error": reason, "role": role, "updated_at": now}
        events = failed_events(run_id, role, reason, now, hop=task.hop if task else 0)
    else:
        run_id = None
    return Handoff(entry=entry, run_id=run_id, msg_id=f"dead:{entry.stream}:{entry.id}",
                   outputs=outputs, record=record, partition=partition, events=events)
