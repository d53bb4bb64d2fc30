"""A run's message flow, rebuilt hop by hop from the scratchpads and the streams.

Each scratchpad entry is one processed message: its field is the input stream entry id and its
``meta`` says which message (``msg_id``), which consumer, when the step started and finished and
how many tokens it generated. The task message itself (still in its role's stream unless trimmed)
gives the parent message, so each hop knows who sent it and who received its output. The final
``result`` (or ``error``) message on the results stream carries the run's own ``trace``; dead
letters of the run and tasks still waiting in a stream complete the picture.
"""

from __future__ import annotations

from typing import Any

import msgspec

from ...broker import Keys, PadEntry, RunRecord, parse_consumer
from ...broker.dlq import list_dead_op
from ...broker.drive import Op, awaiting, blocking
from ...broker.runs import agents_in_run_op, run_record_op
from ...broker.stats import discover_streams_op, entries_from_op, pad_entries_op, stream_entries_op
from ...protocol import TERMINAL_STATUSES, Error, Hop, ProtocolError, Result, RunStatus, Task, decode

__all__ = ["RunNotFound", "RunTrace", "TraceHop", "Waiting", "abuild_trace", "build_trace", "build_trace_op"]

EXPIRED = "expired"
"""The status a trace shows for a run whose record expired (its scratchpads remain)."""

RESULT_SINK = "result"
SUBMIT_SOURCE = "submit"


class RunNotFound(LookupError):
    """No record and no scratchpad of the run exist (wrong id, prefix, or Redis)."""


class TraceHop(msgspec.Struct, kw_only=True):
    """One processed message: sent by ``sender``, handled by ``role``/``agent``, passed to ``receivers``.

    Times are unix seconds; ``wait_s`` is the time in the stream before the step started,
    ``step_s`` how long the step took.
    """

    hop: int
    role: str
    agent: str
    consumer: str
    msg_id: str
    parent_id: str | None
    stream: str
    entry_id: str
    sender: str
    receivers: list[str]
    created_at: float | None
    started: float
    finished: float
    wait_s: float | None
    step_s: float
    tokens: int
    truncated: bool
    task: str
    response: str


class Waiting(msgspec.Struct, kw_only=True):
    """A task of the run published but not yet handled."""

    role: str
    msg_id: str
    parent_id: str | None
    stream: str
    entry_id: str
    sender: str
    created_at: float
    task: str


class RunTrace(msgspec.Struct, kw_only=True):
    """The whole flow of one run."""

    run_id: str
    status: str
    workflow: str
    task: str
    created_at: float | None
    finished_at: float | None
    duration_s: float | None
    tokens: int
    hops: list[TraceHop]
    waiting: list[Waiting]
    result: str | None
    error: str | None
    result_trace: list[Hop]
    dead_letters: list[dict[str, Any]]

    @property
    def ended(self) -> bool:
        """Whether the run has ended (nothing will change its status again)."""
        return self.status in TERMINAL_STATUSES

    def to_builtins(self) -> dict[str, Any]:
        """The trace as JSON-ready builtins (with ``ended``)."""
        doc: dict[str, Any] = msgspec.to_builtins(self)
        doc["ended"] = self.ended
        return doc


def _decode(raw: bytes | None) -> Any:
    if not raw:
        return None
    try:
        return decode(raw)
    except ProtocolError:
        return None


def build_trace_op(keys: Keys, run_id: str, *, search: int = 2000) -> Op[RunTrace]:
    """Rebuild the flow of ``run_id``; ``RunNotFound`` when Redis knows nothing of it.

    ``search`` bounds how many entries are read from the results, dead-letter and task streams
    when looking for the run's messages by time.
    """
    rec = yield from run_record_op(keys, run_id)
    agents = yield from agents_in_run_op(keys, run_id)
    if rec is None and not agents:
        raise RunNotFound(f"no run {run_id!r} (check the id, BATON_PREFIX and REDIS_URL)")
    p = keys.partition(run_id)
    tag = keys.tag(p)
    workflow = (rec.workflow if rec else "") or "*"
    streams = [s for s in (yield from discover_streams_op(keys, workflow)) if s.startswith(f"{tag}:")]
    pads: list[tuple[str, str, PadEntry]] = []
    for agent in agents:
        pads += [(agent, entry_id, entry) for entry_id, entry in (yield from pad_entries_op(keys, run_id, agent))]
    wanted = [(s, eid) for _, eid, _ in pads for s in streams]
    found = yield from stream_entries_op(wanted)
    tasks: dict[str, tuple[str, Task]] = {}
    for (stream, _), raw in zip(wanted, found, strict=True):
        msg = _decode(raw)
        if isinstance(msg, Task) and msg.run_id == run_id:
            tasks[msg.id] = (stream, msg)
    hops = [_hop(agent, eid, pad, tasks) for agent, eid, pad in pads]
    hops.sort(key=lambda h: (h.hop, h.started))
    role_of = {h.msg_id: h.role for h in hops}
    for h in hops:
        h.sender = role_of.get(h.parent_id or "", SUBMIT_SOURCE if h.hop == 0 else "?")
    waiting = yield from _waiting(keys, rec, run_id, streams, hops, role_of, search)
    children: dict[str, list[str]] = {}
    for h in hops:
        children.setdefault(h.parent_id or "", []).append(h.role)
    for w in waiting:
        children.setdefault(w.parent_id or "", []).append(w.role)
    final = yield from _final_message(keys, rec, run_id, search)
    for h in hops:
        h.receivers = children.get(h.msg_id, [])
        if not h.receivers and isinstance(final, Result) and final.parent_id == h.msg_id:
            h.receivers = [RESULT_SINK]
    created = rec.created_at or None if rec else None
    finished = rec.finished_at if rec else None
    if finished is None and rec is not None and rec.ended:
        finished = rec.updated_at or None
    return RunTrace(
        run_id=run_id, status=rec.status if rec else EXPIRED, workflow=rec.workflow if rec else "",
        task=rec.task if rec else "", created_at=created, finished_at=finished,
        duration_s=round(finished - created, 6) if created is not None and finished is not None else None,
        tokens=sum(h.tokens for h in hops), hops=hops, waiting=waiting,
        result=rec.result or None if rec else None, error=rec.error or None if rec else None,
        result_trace=list(final.trace) if isinstance(final, Result | Error) else [],
        dead_letters=(yield from _dead(keys, run_id, search)),
    )


build_trace = blocking(build_trace_op)
abuild_trace = awaiting(build_trace_op)


def _hop(agent: str, entry_id: str, pad: PadEntry, tasks: dict[str, tuple[str, Task]]) -> TraceHop:
    meta = pad.meta
    stream, task = tasks.get(meta.msg_id, ("", None))
    started, finished = meta.started, meta.finished
    created = task.created_at if task else None
    parsed = parse_consumer(meta.consumer)
    role = task.role if task else (parsed.role if parsed else "")
    return TraceHop(
        hop=meta.hop, role=role, agent=agent,
        consumer=meta.consumer, msg_id=meta.msg_id, parent_id=task.parent_id if task else None,
        stream=stream, entry_id=entry_id, sender="", receivers=[], created_at=created,
        started=started, finished=finished,
        wait_s=round(started - created, 6) if created is not None else None,
        step_s=round(finished - started, 6), tokens=meta.tokens,
        truncated=meta.truncated, task=pad.task, response=pad.response,
    )


def _waiting(keys: Keys, rec: RunRecord | None, run_id: str, streams: list[str],
             hops: list[TraceHop], role_of: dict[str, str], search: int) -> Op[list[Waiting]]:
    if rec is None or rec.status not in {RunStatus.QUEUED, RunStatus.RUNNING}:
        return []
    role = rec.role
    since = rec.updated_at or rec.created_at
    done = {h.msg_id for h in hops}
    out: list[Waiting] = []
    for stream in streams:
        name = keys.parse_stream(stream)
        if role and (name is None or name.role != role):
            continue
        for entry_id, raw in (yield from entries_from_op(stream, int(since * 1000) - 2000, search)):
            msg = _decode(raw)
            if isinstance(msg, Task) and msg.run_id == run_id and msg.id not in done:
                out.append(Waiting(role=msg.role, msg_id=msg.id, parent_id=msg.parent_id, stream=stream,
                                   entry_id=entry_id,
                                   sender=role_of.get(msg.parent_id or "", SUBMIT_SOURCE),
                                   created_at=msg.created_at, task=msg.task))
    return out


def _final_message(keys: Keys, rec: RunRecord | None, run_id: str, search: int) -> Op[Any]:
    if rec is None or not rec.ended:
        return None
    at = rec.finished_at or rec.updated_at
    for _, raw in (yield from entries_from_op(keys.results(keys.partition(run_id)), int(at * 1000) - 5000, search)):
        msg = _decode(raw)
        if isinstance(msg, Result | Error) and msg.run_id == run_id:
            return msg
    return None


def _dead(keys: Keys, run_id: str, search: int) -> Op[list[dict[str, Any]]]:
    dead = yield from list_dead_op(keys, run_id=run_id, limit=search, newest_first=True)
    return [{"entry_id": d.id, "role": d.letter.role, "reason": d.letter.reason, "attempts": d.letter.attempts,
             "created_at": d.letter.created_at}
            for d in dead]
