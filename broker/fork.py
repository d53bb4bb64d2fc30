"""Fork and replay: new runs made from an existing run's history (its scratchpads).

``fork_run`` starts a new run at role ``from_role``: it copies every scratchpad entry of the
source run written before that role's hop (so the agents remember what they remembered then),
and publishes the role's original input (the ``task`` of its scratchpad entry), or an edited
one, as the new run's first task at the same hop. ``replay_run`` re-runs from the start with the
same workflow and task text. With greedy decoding both reproduce the source run's outputs from
the point they start. With ``reuse_journal`` the new run reuses the source run's call journal
(``broker/journal.py``): its code roles get the source's recorded model, tool and step results for
the same hop back, for as long as their calls match the recorded ones (the first call that differs,
and every call after it in that hop, runs again); without it every call runs again. Nothing is
capped: the history is the scratchpads, kept as long as the run's record.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ..protocol import DEFAULT_WORKFLOW, Budget, Priority, RunStatus, Task, new_id
from .drive import Op, awaiting, blocking
from .journal import JOURNAL_FROM
from .keys import Keys
from .pads import decode_pad
from .records import RunRecord
from .runs import run_record_op, submit_op
from .streams import entry_id_key
from .text import as_text

__all__ = ["ForkError", "ForkOptions", "afork_run", "areplay_run", "fork_op", "fork_run", "replay_op", "replay_run"]


class ForkError(ValueError):
    """A run that cannot be forked as asked; the message says why."""


@dataclass(frozen=True, slots=True)
class ForkOptions:
    """How the new run of a fork or a replay runs (``fork_op``, ``replay_op``); the defaults: no
    deadline, the workers' hop limit, the source run's lane, every call made again."""

    deadline: float | None = None
    """The new run's deadline (a Unix time), if any."""
    max_hops: int | None = None
    """The new run's hop limit (None: the worker's ``BATON_MAX_HOPS``)."""
    priority: Priority | None = None
    """The new run's lane (None: the source run's)."""
    reuse_journal: bool = False
    """Code roles get the source run's recorded calls back while their calls match (``broker/journal.py``)."""


class _Entry:
    """One scratchpad entry: its agent, the agent's index score, its field (entry id) and value."""

    __slots__ = ("agent", "entry", "field", "raw", "score")

    def __init__(self, agent: str, score: float, field: str, raw: bytes) -> None:
        self.agent, self.score, self.field, self.raw = agent, score, field, raw
        self.entry = decode_pad(raw)

    @property
    def hop(self) -> int:
        return self.entry.meta.hop

    @property
    def role(self) -> str:
        return self.entry.meta.role


def _history(keys: Keys, run_id: str) -> Op[list[_Entry]]:
    """Every scratchpad entry of ``run_id`` with its agent, index score and field name, in write order."""
    found: list[_Entry] = []
    rows: Any = yield lambda c: c.zrange(keys.pads(run_id), 0, -1, withscores=True)
    for member, score in rows:
        agent = as_text(member)
        raw: Any = yield lambda c: c.hgetall(keys.pad(run_id, agent))  # noqa: B023 (called at once)
        found += [_Entry(agent, score, as_text(f), v) for f, v in raw.items()]
    found.sort(key=lambda e: entry_id_key(e.field))
    return found


def _source(keys: Keys, run_id: str) -> Op[RunRecord]:
    rec = yield from run_record_op(keys, run_id)
    if rec is None:
        raise ForkError(f"no run {run_id!r} (check the id, BATON_PREFIX and REDIS_URL)")
    return rec


def fork_op(keys: Keys, run_id: str, from_role: str, task: str | None = None, *,
            options: ForkOptions = ForkOptions()) -> Op[str]:
    """A new run continuing ``run_id`` from ``from_role``'s (first) hop; returns the new run id.

    The new run gets the source's scratchpad entries of earlier hops, and starts with the role's
    original input, or ``task`` when given, in the source's lane unless ``options.priority`` says
    otherwise (``ForkOptions``).
    Its record says ``forked_from`` (the source run),
    ``forked_at`` (the role) and ``forked_hop``. ``ForkError`` when the run or role is unknown.
    """
    rec = yield from _source(keys, run_id)
    history = yield from _history(keys, run_id)
    at_role = [e for e in history if e.role == from_role]
    if not at_role:
        ran = ", ".join(dict.fromkeys(e.role for e in history if e.role)) or "none"
        raise ForkError(f"role {from_role!r} has no scratchpad entry in run {run_id} (roles that ran: {ran})")
    hop = min(e.hop for e in at_role)
    first = [e for e in at_role if e.hop == hop]
    meta = first[0].entry.meta
    text = first[0].entry.task if task is None else task
    if task is None and meta.parts > 1:
        raise ForkError(f"role {from_role!r} ran as {meta.parts} fan-out parts in run {run_id}; fork from the "
                        "role before it, or give --task")
    new = Task(run_id=new_id(), role=from_role, task=text, workflow=rec.workflow or DEFAULT_WORKFLOW, hop=hop,
               deadline=options.deadline, max_hops=options.max_hops, priority=options.priority or rec.priority,
               tenant=rec.tenant)
    label: dict[str, str | int] = {"forked_from": run_id, "forked_at": from_role, "forked_hop": hop}
    if options.reuse_journal:
        label[JOURNAL_FROM] = run_id
    return (yield from _start(keys, new, [e for e in history if e.hop < hop], label, rec.usage.budget))


def replay_op(keys: Keys, run_id: str, *, options: ForkOptions = ForkOptions()) -> Op[str]:
    """A new run of ``run_id``'s workflow with the same task text, from its first role (in the
    source's lane unless ``options.priority`` says otherwise); returns its id.

    Its record says ``replayed_from``. ``ForkError`` when the run is unknown or its first hop left
    no trace of which role it started at.
    """
    rec = yield from _source(keys, run_id)
    starts = [e for e in (yield from _history(keys, run_id)) if e.hop == 0 and e.role]
    if not starts:
        raise ForkError(f"run {run_id} has no scratchpad entry of its first hop to replay from")
    new = Task(run_id=new_id(), role=starts[0].role, task=rec.task, workflow=rec.workflow or DEFAULT_WORKFLOW,
               deadline=options.deadline, max_hops=options.max_hops, priority=options.priority or rec.priority,
               tenant=rec.tenant)
    label: dict[str, str | int] = {"replayed_from": run_id}
    if options.reuse_journal:
        label[JOURNAL_FROM] = run_id
    return (yield from _start(keys, new, [], label, rec.usage.budget))


fork_run = blocking(fork_op)
afork_run = awaiting(fork_op)
replay_run = blocking(replay_op)
areplay_run = awaiting(replay_op)


def _start(keys: Keys, task: Task, copied: Sequence[_Entry], label: dict[str, str | int],
           budget: Budget | None) -> Op[str]:
    """Write the copied scratchpads and the record's label, then submit ``task`` (a new run) with
    the source run's ``budget`` (its counts start from zero)."""
    pipe = yield lambda c: c.pipeline(transaction=True)
    for e in copied:
        pipe.hset(keys.pad(task.run_id, e.agent), e.field, e.raw)
        pipe.zadd(keys.pads(task.run_id), {e.agent: e.score}, nx=True)
    record: dict[Any, Any] = {**label, "status": RunStatus.QUEUED, "created_at": time.time()}
    pipe.hset(keys.run(task.run_id), mapping=record)
    if ttl := keys.retention.record_ttl_s:
        for key in {keys.run(task.run_id), *(keys.pad(task.run_id, e.agent) for e in copied),
                    keys.pads(task.run_id)}:
            pipe.expire(key, ttl)
    yield lambda _: pipe.execute()
    return (yield from submit_op(keys, task, budget=budget))
