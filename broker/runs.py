"""Run records, scratchpads and results: submitting a run and reading what it produced."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
import redis

from baton.broker.backpressure import refuse_when_full
from baton.broker.budget import RESERVE_FIELDS, budget_fields, needs_reservation
from baton.broker.cache import PerClient
from baton.broker.cluster import is_cluster
from baton.broker.events import AsyncRedis, append_events
from baton.broker.keys import Keys
from baton.broker.pads import PadEntry, pad_rows
from baton.broker.records import RunRecord, decode_run, run_metadata
from baton.broker.scripts import LuaScript, is_missing, library
from baton.broker.streams import ensure_group
from baton.broker.tenants import stage_tenant_run
from baton.broker.text import as_text
from baton.protocol import Budget, Error, Queued, Result, RunStatus, Task, decode, encode

__all__ = [
    "BeforeRun",
    "RunRecord",
    "RunView",
    "agents_in_run",
    "alist_runs",
    "arun_record",
    "arun_records",
    "before_run",
    "cancelled_and_scratchpads",
    "get_run",
    "latest_run",
    "list_runs",
    "queued_event",
    "run_fields",
    "run_metadata",
    "run_record",
    "run_records",
    "run_scratchpads",
    "scratchpad",
    "scratchpads",
    "stage_submit",
    "submit",
    "wait_for_runs",
]


RunView = dict[str, str]


@refuse_when_full
def submit(
    client: redis.Redis, keys: Keys, task: Task, *, metadata: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> str:
    """Create the run record, its ``queued`` event and its first task on its workflow's stream (in
    the task's ``priority`` lane, kept on the record), in one MULTI; return the run id.

    The task is checked against the protocol's constraints first (``ProtocolError``, nothing
    written): a task built in Python is not validated until it is decoded. A task with a
    ``traceparent`` gets its trace id in the record (``trace_id``), to find the run's trace.
    ``metadata`` (a small map of the caller's own labels) is stored on the record as JSON in its
    ``metadata`` field; :func:`run_metadata` reads it back. ``budget``'s limits become record
    fields (``broker.budget``).
    """
    pipe = client.pipeline(transaction=True)
    stage_submit(pipe, keys, task, metadata=metadata, budget=budget)
    ensure_group_once(client, keys.run_stream(task.workflow, task.role, task.run_id, task.priority),
                      keys.group(task.role))
    pipe.execute()
    return task.run_id


def stage_submit(
    pipe: Any, keys: Keys, task: Task, *, metadata: Mapping[str, str] | None = None, budget: Budget | None = None,
) -> None:
    """Queue on ``pipe`` the writes of :func:`submit` for ``task`` (checked first; the caller executes
    the pipeline and has made sure the task stream's group exists)."""
    payload = encode(task)
    decode(payload)
    stream = keys.run_stream(task.workflow, task.role, task.run_id, task.priority)
    p = keys.partition(task.run_id)
    pipe.hset(keys.run(task.run_id), mapping=run_fields(task, metadata=metadata, budget=budget))
    if keys.retention.record_ttl_s:
        pipe.expire(keys.run(task.run_id), keys.retention.record_ttl_s)
    pipe.zadd(keys.runs(p), {task.run_id: task.created_at})
    if task.tenant:
        stage_tenant_run(pipe, keys, task.tenant, p, task.run_id, task.created_at)
    pipe.xadd(stream, {"msg": payload})
    append_events(pipe, keys, task.run_id, [queued_event(task)])


def queued_event(task: Task) -> Queued:
    """The ``queued`` event of a run submitted with ``task``."""
    return Queued(run_id=task.run_id, at=task.created_at, role=task.role, hop=task.hop, workflow=task.workflow,
                  task=task.task)


def run_fields(task: Task, *, metadata: Mapping[str, str] | None = None,
               budget: Budget | None = None) -> dict[str, Any]:
    """The fields of a new run's record (``queued``) for its first ``task``."""
    record: dict[str, Any] = {
        "run_id": task.run_id,
        "task": task.task,
        "workflow": task.workflow,
        "status": RunStatus.QUEUED,
        "role": task.role,
        "priority": task.priority,
        "created_at": task.created_at,
        "updated_at": task.created_at,
    }
    if task.traceparent:
        record["trace_id"] = task.traceparent[3:35]
    if task.tenant:
        record["tenant"] = task.tenant
    record.update(budget_fields(budget))
    if metadata:
        record["metadata"] = _encode_json(dict(metadata))
    return record


_encode_json = msgspec.json.Encoder().encode

_groups_made: PerClient[tuple[str, str], bool] = PerClient(maxsize=1024)


def ensure_group_once(client: redis.Redis, stream: str, group: str) -> None:
    """``ensure_group`` on the first submit to ``stream`` through ``client``; a no-op later.

    Saves a round trip (and a BUSYGROUP error reply) per submit. Should the group vanish later
    (a Redis restart without persistence), workers re-create it from id 0 on their next read,
    so entries published in between are still delivered.
    """
    def make() -> bool:
        ensure_group(client, stream, group)
        return True

    _groups_made.get(client, (stream, group), make)


def get_run(client: redis.Redis, keys: Keys, run_id: str) -> RunView | None:
    """The run record's stored fields as strings, or None when there is no such run (what tests and
    raw inspection read; code reads :func:`run_record`)."""
    raw = client.hgetall(keys.run(run_id))
    return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None


def run_record(client: redis.Redis, keys: Keys, run_id: str) -> RunRecord | None:
    """The run's record, decoded; None when there is no such run (or it expired)."""
    return decode_run(run_id, client.hgetall(keys.run(run_id)))


async def arun_record(aclient: AsyncRedis, keys: Keys, run_id: str) -> RunRecord | None:
    """``run_record`` for a ``redis.asyncio`` client."""
    return decode_run(run_id, await aclient.hgetall(keys.run(run_id)))


def run_records(client: redis.Redis, keys: Keys, run_ids: Iterable[str]) -> list[RunRecord | None]:
    """The records of ``run_ids`` in order (None for a missing one), in one pipelined round trip."""
    ids = list(run_ids)
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id in ids:
        pipe.hgetall(keys.run(run_id))
    return [decode_run(run_id, raw) for run_id, raw in zip(ids, pipe.execute(), strict=True)]


async def arun_records(aclient: AsyncRedis, keys: Keys, run_ids: Iterable[str]) -> list[RunRecord | None]:
    """``run_records`` for a ``redis.asyncio`` client."""
    ids = list(run_ids)
    if not ids:
        return []
    pipe = aclient.pipeline(transaction=False)
    for run_id in ids:
        pipe.hgetall(keys.run(run_id))
    return [decode_run(run_id, raw) for run_id, raw in zip(ids, await pipe.execute(), strict=True)]


def list_runs(client: redis.Redis, keys: Keys, limit: int = 20) -> list[str]:
    """The newest run ids, newest first."""
    return _newest([client.zrevrange(keys.runs(p), 0, limit - 1, withscores=True) for p in range(keys.partitions)],
                   limit)


async def alist_runs(aclient: AsyncRedis, keys: Keys, limit: int = 20) -> list[str]:
    """``list_runs`` for a ``redis.asyncio`` client."""
    return _newest([await aclient.zrevrange(keys.runs(p), 0, limit - 1, withscores=True)
                    for p in range(keys.partitions)], limit)


def _newest(partitions: Sequence[Any], limit: int) -> list[str]:
    """The ``limit`` newest run ids of every partition's ``(member, score)`` rows."""
    scored = sorted(((score, as_text(member)) for rows in partitions for member, score in rows), reverse=True)
    return [run_id for _, run_id in scored[:limit]]


def latest_run(client: redis.Redis, keys: Keys) -> str | None:
    """The newest run id, if any."""
    runs = list_runs(client, keys, 1)
    return runs[0] if runs else None


def agents_in_run(client: redis.Redis, keys: Keys, run_id: str) -> list[str]:
    """Agents that wrote a scratchpad in ``run_id``, in the order they first wrote."""
    return [as_text(a) for a in client.zrange(keys.pads(run_id), 0, -1)]


def scratchpad(client: redis.Redis, keys: Keys, run_id: str, agent: str) -> list[PadEntry]:
    """An agent's scratchpad entries in one run, oldest first."""
    return _pad_entries(client.hgetall(keys.pad(run_id, agent)))


def run_scratchpads(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, list[PadEntry]]:
    """Every agent's scratchpad entries in ``run_id``, by agent in the order they first wrote."""
    agents = agents_in_run(client, keys, run_id)
    return dict(zip(agents, scratchpads(client, keys, [(run_id, a) for a in agents]), strict=True))


def scratchpads(
    client: redis.Redis, keys: Keys, pads: Sequence[tuple[str, str]]
) -> list[list[PadEntry]]:
    """The scratchpads of several ``(run_id, agent)`` pairs in one pipelined round trip.

    Each result is what :func:`scratchpad` returns for that pair; a pair asked for twice is
    read once.
    """
    if not pads:
        return []
    if len(pads) == 1:  # a plain call costs less than a pipeline of one
        return [scratchpad(client, keys, *pads[0])]
    unique = list(dict.fromkeys(pads))
    pipe = client.pipeline(transaction=False)
    for run_id, agent in unique:
        pipe.hgetall(keys.pad(run_id, agent))
    found = dict(zip(unique, pipe.execute(), strict=True))
    if len(unique) == len(pads):
        return [_pad_entries(found[p]) for p in pads]
    parsed = {p: _pad_entries(raw) for p, raw in found.items()}
    return [list(parsed[p]) for p in pads]


def cancelled_and_scratchpads(
    client: redis.Redis, keys: Keys, run_ids: Sequence[str], pads: Sequence[tuple[str, str]]
) -> tuple[list[bool], list[list[PadEntry]]]:
    """What a worker reads before running a batch, in one round trip: which of ``run_ids`` are
    cancelled, and the scratchpads of the ``(run_id, agent)`` pairs in ``pads``."""
    read = before_run(client, keys, run_ids, pads, budgets=False)
    return read.cancelled, read.pads


@dataclass(frozen=True, slots=True)
class BeforeRun:
    """What ``before_run`` read: cancelled flags and budget flags (by run id, in order) and scratchpads."""

    cancelled: list[bool]
    pads: list[list[PadEntry]]
    limited: list[bool]
    """Runs whose model calls must be reserved first (``broker.budget.needs_reservation``); a run
    without model limits skips the reservation, and its usage is counted with its commit."""
    tenants: list[str | None] = field(default_factory=list)
    """Each run's tenant as its record says (``""``: none or no record), when asked for (``tenants``)."""


def before_run(
    client: redis.Redis, keys: Keys, run_ids: Sequence[str], pads: Sequence[tuple[str, str]], *, budgets: bool = True,
    started: Sequence[bytes] = (), tenants: bool = False,
) -> BeforeRun:
    """Everything a worker reads before running a batch, in one round trip: which of ``run_ids``
    are cancelled, the scratchpads of the ``(run_id, agent)`` pairs in ``pads`` and (``budgets``)
    which runs have model-call limits (``limited``; all False without ``budgets``).

    ``started`` (one encoded event per run id, ``b""`` for none) are the hops' ``hop_started``
    events: each is appended to its run's log in the same round trip unless the run is cancelled
    (``lua/started.lua``, one call per partition), so a hop is seen starting before its model call
    without a write of its own, and a cancelled run's log gets none. ``tenants``: read each run's
    tenant from its record too (what a worker checks an entry's ``tenant`` against).
    """
    if not run_ids and not pads:
        return BeforeRun([], [], [])
    if started and len(started) != len(run_ids):
        raise ValueError("before_run: one started event (or b'') per run id")
    fields = (*RESERVE_FIELDS, "tenant") if budgets or tenants else ()
    if started:
        flags, read_pads, records = _read_started(client, keys, run_ids, pads, started, fields)
    else:
        flags, read_pads, records = _read_plain(client, keys, run_ids, pads, fields)
    limited = {r: budgets and needs_reservation(v[:-1]) for r, v in records.items()}
    owner = {r: as_text(v[-1] or b"") for r, v in records.items()}
    return BeforeRun(flags, read_pads, [limited.get(r, False) for r in run_ids],
                     [owner.get(r, "") for r in run_ids] if tenants else [])


def _read_plain(client: redis.Redis, keys: Keys, run_ids: Sequence[str], pads: Sequence[tuple[str, str]],
                fields: Sequence[str]) -> tuple[list[bool], list[list[PadEntry]], dict[str, list[Any]]]:
    """``before_run`` without events: SMISMEMBER per partition, HGETALL per scratchpad, HMGET per run."""
    pipe = client.pipeline(transaction=False)
    by_p = keys.by_partition(run_ids)
    for p, ids in by_p.items():
        pipe.smismember(keys.cancelled(p), ids)
    groups = list(by_p.values())
    for run_id, agent in pads:
        pipe.hgetall(keys.pad(run_id, agent))
    unique = list(dict.fromkeys(run_ids)) if fields else []
    for run_id in unique:
        pipe.hmget(keys.run(run_id), fields)
    replies = pipe.execute(raise_on_error=False)
    for r in replies:
        if isinstance(r, Exception):
            raise r
    flags = cancelled_flags(run_ids, groups, replies[: len(groups)])
    n = len(groups) + len(pads)
    read_pads = [_pad_entries(raw) for raw in replies[len(groups) : n]]
    return flags, read_pads, dict(zip(unique, (list(r) for r in replies[n:]), strict=True))


def _read_started(client: redis.Redis, keys: Keys, run_ids: Sequence[str], pads: Sequence[tuple[str, str]],
                  started: Sequence[bytes], fields: Sequence[str],
                  ) -> tuple[list[bool], list[list[PadEntry]], dict[str, list[Any]]]:
    """``before_run`` with events: one ``started.lua`` call per partition reads the flags, the
    record fields and the scratchpads of its runs and writes their events (one command, not one
    per run and scratchpad); a scratchpad of a run outside ``run_ids`` is read on its own."""
    _started.ensure_loaded(client)
    by_p: dict[int, list[tuple[str, bytes]]] = {}
    for run_id, event in zip(run_ids, started, strict=True):
        by_p.setdefault(keys.partition(run_id), []).append((run_id, event))
    pads_of: dict[int, list[int]] = {p: [] for p in by_p}
    apart: list[int] = []
    for j, (run_id, _) in enumerate(pads):
        p = keys.partition(run_id)
        pads_of.get(p, apart).append(j)
    kept = keys.retention
    calls: list[tuple[list[str], list[str | bytes | int]]] = []
    for p, items in by_p.items():
        mine = [keys.pad(*pads[j]) for j in pads_of[p]]
        script_keys = [keys.cancelled(p), *(keys.events(r) for r, _ in items), *(keys.run(r) for r, _ in items),
                       *mine]
        calls.append((script_keys, [kept.events_maxlen, kept.events_ttl_s, len(fields), len(mine), *fields,
                                    *(r for r, _ in items), *(e for _, e in items)]))
    pipe = client.pipeline(transaction=False)
    for script_keys, args in calls:
        _started.queue(pipe, client, script_keys, args)
    for j in apart:
        pipe.hgetall(keys.pad(*pads[j]))
    replies = pipe.execute(raise_on_error=False)
    for i, (script_keys, args) in enumerate(calls):
        if is_missing(replies[i]):  # the server lost the library: one call loads it again
            library().forget(client)
            replies[i] = _started(client, script_keys, args)
    for r in replies:
        if isinstance(r, Exception):
            raise r
    flags: dict[str, bool] = {}
    records: dict[str, list[Any]] = {}
    read_pads: list[list[PadEntry]] = [[] for _ in pads]
    for (p, items), (call_flags, call_records, call_pads) in zip(by_p.items(), replies, strict=False):
        for (run_id, _), flag in zip(items, call_flags, strict=True):
            flags[run_id] = bool(flag)
        for (run_id, _), values in zip(items, call_records if fields else [], strict=bool(fields)):
            records[run_id] = list(values)
        for j, raw in zip(pads_of[p], call_pads, strict=True):
            read_pads[j] = _pad_entries(_pairs(raw))
    for j, raw in zip(apart, replies[len(calls):], strict=True):
        read_pads[j] = _pad_entries(raw)
    return [flags[r] for r in run_ids], read_pads, records


def _pairs(flat: Sequence[Any]) -> dict[Any, Any]:
    """A hash from a script's flat HGETALL reply (field, value, field, value...)."""
    return dict(zip(flat[::2], flat[1::2], strict=True))


_started = LuaScript("started.lua")


def cancelled_flags(run_ids: Sequence[str], groups: list[list[str]], replies: list[Any]) -> list[bool]:
    """The flags of ``run_ids`` in order, from one SMISMEMBER reply per group of ids."""
    flags: dict[str, bool] = {}
    for ids, reply in zip(groups, replies, strict=True):
        flags.update(zip(ids, (bool(f) for f in reply), strict=True))
    return [flags[r] for r in run_ids]


def _pad_entries(raw: Mapping[Any, Any]) -> list[PadEntry]:
    return [entry for _, entry in pad_rows(raw)] if raw else []


def wait_for_runs(
    client: redis.Redis, keys: Keys, run_ids: Iterable[str], *, timeout: float | None = None,
    poll_s: float = 1.0,
) -> dict[str, RunRecord]:
    """Block until every run is finished (done, failed or cancelled) or ``timeout`` passes.

    Wakes on the results streams and reads the records of the runs reported there; the records of
    every run still waited for are read first, and again after a quiet ``poll_s`` only, so a result
    published before the wait began is not missed and a wait for many runs costs a bounded number
    of reads per run. Returns the records of the finished runs.
    """
    pending = set(run_ids)
    finished: dict[str, RunRecord] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    cursors = {keys.results(p): "$" for p in range(keys.partitions)}
    check: set[str] = set(pending)
    while True:
        for rec in _records(client, keys, check):
            if rec.ended:
                finished[rec.run_id] = rec
                pending.discard(rec.run_id)
        if not pending:
            return finished
        remaining = poll_s if deadline is None else min(poll_s, deadline - time.monotonic())
        if remaining <= 0:
            return finished
        replies = _read_results(client, cursors, max(1, int(remaining * 1000)))
        check = set() if replies else set(pending)
        for stream, items in replies:
            for entry_id, fields in items:
                cursors[as_text(stream)] = as_text(entry_id)
                data = fields.get(b"msg")
                if data is None:
                    continue
                try:
                    msg = decode(data)
                except ValueError:
                    continue
                if isinstance(msg, Result | Error) and msg.run_id in pending:
                    check.add(msg.run_id)


def _records(client: redis.Redis, keys: Keys, run_ids: Iterable[str], page: int = 1000) -> list[RunRecord]:
    """The records of ``run_ids`` that exist, read in pipelined pages."""
    ids = list(run_ids)
    return [rec for start in range(0, len(ids), page)
            for rec in run_records(client, keys, ids[start:start + page]) if rec is not None]


def _read_results(client: redis.Redis, cursors: dict[str, str], block_ms: int) -> list[Any]:
    """XREAD the results streams; on a cluster one stream at a time (each in its own slot),
    sharing out the wait."""
    if not is_cluster(client) or len(cursors) == 1:
        reply: Any = client.xread(cursors, block=block_ms)  # type: ignore[arg-type]
        return list(reply or [])
    share = max(1, block_ms // len(cursors))
    got: list[Any] = []
    for stream, cursor in cursors.items():
        part: Any = client.xread({stream: cursor}, block=None if got else share)
        got += part or []
    return got
