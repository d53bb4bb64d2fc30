"""Run records, scratchpads and results: submitting a run and reading what it produced.

What a worker reads before running a batch (cancel flags, scratchpads, budgets, in one round
trip) is ``broker/prefetch.py``."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import msgspec
import redis
from redis.exceptions import ResponseError

from ..protocol import Budget, Queued, RunStatus, Task, decode, encode, encode_event
from . import direct
from .backpressure import refuse_when_full_op
from .budget import budget_fields
from .cache import PerClient
from .cluster import is_cluster
from .drive import Call, Op, awaiting, blocking, is_async, run
from .events import AsyncRedis, append_events
from .keys import Keys
from .pads import PadEntry, pad_entries
from .records import RunRecord, decode_run, run_metadata
from .results import ResultsReader
from .scripts import Mode, is_missing, library
from .tenants import stage_admit, stage_tenant_run
from .text import as_text

__all__ = [
    "RunRecord",
    "RunView",
    "agents_in_run",
    "agents_in_run_op",
    "alist_runs",
    "arun_scratchpads",
    "arun_record",
    "arun_records",
    "asubmit",
    "get_run",
    "latest_run",
    "list_runs",
    "queued_event",
    "run_fields",
    "run_metadata",
    "run_record",
    "run_record_op",
    "run_records",
    "run_scratchpads",
    "run_scratchpads_op",
    "scratchpad",
    "scratchpads",
    "scratchpads_op",
    "stage_submit",
    "staging_mode",
    "submit",
    "submit_op",
    "task_stream",
    "wait_for_runs",
]


RunView = dict[str, str]


@refuse_when_full_op
def submit_op(keys: Keys, task: Task, *, metadata: Mapping[str, str] | None = None,
              budget: Budget | None = None) -> Op[str]:
    """Create the run record, its ``queued`` event and its first task on its workflow's stream (in
    the task's ``priority`` lane, kept on the record), in one step (the ``submit`` function; a
    tenant's run, or any on a Redis Cluster, in one MULTI under ``WATCH``); return the run id.

    The task is checked against the protocol's constraints first (``ProtocolError``, nothing
    written): a task built in Python is not validated until it is decoded. A task with a
    ``traceparent`` gets its trace id in the record (``trace_id``), to find the run's trace.
    A run a submit already wrote (its record's ``run_id``) is not written again, so a submit that
    redis-py sends a second time (its reply lost to a failover) cannot reset a run that went on
    meanwhile (``docs/RELIABILITY.md``).
    ``metadata`` (a small map of the caller's own labels) is stored on the record as JSON in its
    ``metadata`` field; :func:`run_metadata` reads it back. ``budget``'s limits become record
    fields (``broker.budget``).
    """
    if task.tenant or (yield is_cluster):  # a tenant's admission, or a MULTI routed by a cluster pipeline
        return (yield from _submit_watched(keys, task, metadata=metadata, budget=budget))
    payload = encode(task)
    decode(payload)
    stream = task_stream(keys, task)
    yield from ensure_group_op(stream, keys.group(task.role))
    kept, fields = keys.retention, run_fields(task, metadata=metadata, budget=budget)
    script_keys = [keys.run(task.run_id), keys.runs(keys.partition(task.run_id)), stream, keys.events(task.run_id)]
    args = [kept.record_ttl_s, task.created_at, task.run_id, payload, kept.events_maxlen, kept.events_ttl_s,
            encode_event(queued_event(task)), *(x for pair in fields.items() for x in pair)]
    lib = library()
    for retry in (False, True):  # one FCALL, not a MULTI of seven commands; a lost library is loaded again
        mode = yield from lib.mode_op()
        try:
            yield _held(lib.command_in(mode, "submit", script_keys, args))
            return task.run_id
        except ResponseError as exc:
            if retry or not is_missing(exc):
                raise
        yield lib.forget
    raise AssertionError("unreachable")


def _submit_watched(keys: Keys, task: Task, *, metadata: Mapping[str, str] | None,
                    budget: Budget | None) -> Op[str]:
    """``submit_op``'s MULTI for a tenant's run or on a Redis Cluster, with the run's record ``WATCH``ed:
    a run a submit already wrote is not written again (a retry whose first attempt landed), and a
    connection lost while watching is raised, not resent by redis-py, so the caller's retry looks for
    the record first."""
    yield from ensure_group_op(task_stream(keys, task), keys.group(task.role))
    mode = yield from staging_mode(task)
    record = keys.run(task.run_id)
    pipe = yield lambda c: c.pipeline(transaction=True)
    try:
        while True:
            try:
                yield lambda _: pipe.watch(record)
                if (yield lambda _: pipe.hexists(record, "run_id")):
                    return task.run_id
                pipe.multi()
                stage_submit(pipe, keys, task, mode=mode, metadata=metadata, budget=budget)
                yield lambda _: pipe.execute()
                return task.run_id
            except redis.WatchError:
                continue  # the record changed between our read and EXEC: read it again
    finally:
        yield lambda _: pipe.reset()


def _held(command: list[Any]) -> Call:
    """A call sending ``command`` on a synchronous client's held connection (``broker/direct.py``:
    past redis-py's per-command layers), as it is on an asyncio client."""
    return lambda c: c.execute_command(*command) if is_async(c) else direct.execute(c, *command)


submit = blocking(submit_op)
asubmit = awaiting(submit_op)


def stage_submit(
    pipe: Any, keys: Keys, task: Task, *, mode: Mode, metadata: Mapping[str, str] | None = None,
    budget: Budget | None = None,
) -> None:
    """Queue on ``pipe`` the writes of :func:`submit` for ``task`` (checked first; the caller executes the
    pipeline and has made sure the task stream's group exists; ``mode``: :func:`staging_mode`). A tenant's task
    waits in the tenant's queue instead while its running runs fill its cap (``broker.tenants.stage_admit``)."""
    payload = encode(task)
    decode(payload)
    stream = task_stream(keys, task)
    p = keys.partition(task.run_id)
    pipe.hset(keys.run(task.run_id), mapping=run_fields(task, metadata=metadata, budget=budget))
    if keys.retention.record_ttl_s:
        pipe.expire(keys.run(task.run_id), keys.retention.record_ttl_s)
    pipe.zadd(keys.runs(p), {task.run_id: task.created_at})
    if task.tenant:
        stage_tenant_run(pipe, keys, task.tenant, p, task.run_id, task.created_at)
    if task.tenant:
        stage_admit(pipe, mode, keys, task.tenant, task.run_id, stream, payload)
    else:
        pipe.xadd(stream, {"msg": payload})
    append_events(pipe, keys, task.run_id, [queued_event(task)])


def staging_mode(task: Task) -> Op[Mode]:
    """The ``mode`` :func:`stage_submit` needs for ``task`` (the library is checked only for a tenant's run,
    whose task is admitted by a Lua step)."""
    return (yield from library().mode_op()) if task.tenant else Mode.FUNCTIONS


def task_stream(keys: Keys, task: Task) -> str:
    """The stream ``task`` goes to: its role's, in its run's partition, priority lane and tenant."""
    return keys.run_stream(task.workflow, task.role, task.run_id, task.priority, task.tenant)


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
    run(ensure_group_op(stream, group), client)


def ensure_group_op(stream: str, group: str) -> Op[None]:
    """``ensure_group_once`` as an op (``broker.drive``)."""
    if (yield lambda c: _groups_made.find(c, (stream, group))):
        return
    try:
        yield lambda c: c.xgroup_create(stream, group, id="0", mkstream=True)
    except redis.ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise
    yield lambda c: _groups_made.put(c, (stream, group), True)


def get_run(client: redis.Redis, keys: Keys, run_id: str) -> RunView | None:
    """The run record's stored fields as strings, or None when there is no such run (what tests and
    raw inspection read; code reads :func:`run_record`)."""
    raw = client.hgetall(keys.run(run_id))
    return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None


def run_record_op(keys: Keys, run_id: str) -> Op[RunRecord | None]:
    """The run's record, decoded; None when there is no such run (or it expired)."""
    return decode_run(run_id, (yield lambda c: c.hgetall(keys.run(run_id))))


run_record = blocking(run_record_op)
arun_record = awaiting(run_record_op)


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


def agents_in_run_op(keys: Keys, run_id: str) -> Op[list[str]]:
    """Agents that wrote a scratchpad in ``run_id``, in the order they first wrote."""
    return [as_text(a) for a in (yield lambda c: c.zrange(keys.pads(run_id), 0, -1))]


agents_in_run = blocking(agents_in_run_op)


def scratchpad(client: redis.Redis, keys: Keys, run_id: str, agent: str) -> list[PadEntry]:
    """An agent's scratchpad entries in one run, oldest first."""
    return pad_entries(client.hgetall(keys.pad(run_id, agent)))


def run_scratchpads_op(keys: Keys, run_id: str) -> Op[dict[str, list[PadEntry]]]:
    """Every agent's scratchpad entries in ``run_id``, by agent in the order they first wrote."""
    agents = yield from agents_in_run_op(keys, run_id)
    return dict(zip(agents, (yield from scratchpads_op(keys, [(run_id, a) for a in agents])), strict=True))


run_scratchpads = blocking(run_scratchpads_op)
arun_scratchpads = awaiting(run_scratchpads_op)


def scratchpads_op(keys: Keys, pads: Sequence[tuple[str, str]]) -> Op[list[list[PadEntry]]]:
    """The scratchpads of several ``(run_id, agent)`` pairs in one pipelined round trip.

    Each result is what :func:`scratchpad` returns for that pair; a pair asked for twice is
    read once.
    """
    if not pads:
        return []
    if len(pads) == 1:  # a plain call costs less than a pipeline of one
        return [pad_entries((yield lambda c: c.hgetall(keys.pad(*pads[0]))))]
    unique = list(dict.fromkeys(pads))
    pipe = yield lambda c: c.pipeline(transaction=False)
    for run_id, agent in unique:
        pipe.hgetall(keys.pad(run_id, agent))
    found = dict(zip(unique, (yield lambda _: pipe.execute()), strict=True))
    if len(unique) == len(pads):
        return [pad_entries(found[p]) for p in pads]
    parsed = {p: pad_entries(raw) for p, raw in found.items()}
    return [list(parsed[p]) for p in pads]


scratchpads = blocking(scratchpads_op)


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
    results = ResultsReader(client, keys)
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
        reported = results.read(max(1, int(remaining * 1000)))
        check = {msg.run_id for msg in reported if msg.run_id in pending} if results.arrived else set(pending)


def _records(client: redis.Redis, keys: Keys, run_ids: Iterable[str], page: int = 1000) -> list[RunRecord]:
    """The records of ``run_ids`` that exist, read in pipelined pages."""
    ids = list(run_ids)
    return [rec for start in range(0, len(ids), page)
            for rec in run_records(client, keys, ids[start:start + page]) if rec is not None]
