"""Run records, scratchpads and results: submitting a run and reading what it produced."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from baton.broker.backpressure import refuse_when_full
from baton.broker.budget import RESERVE_FIELDS, budget_fields, needs_reservation
from baton.broker.cache import PerClient
from baton.broker.cluster import is_cluster
from baton.broker.events import DEFAULT_EVENTS_MAXLEN, append_events
from baton.broker.keys import MARKER_TTL_S, Keys
from baton.broker.scripts import LuaScript, is_missing, library
from baton.broker.streams import ensure_group, entry_id_key
from baton.broker.text import as_text
from baton.protocol import TERMINAL_STATUSES, Budget, Error, Queued, Result, RunStatus, Task, decode, encode

__all__ = [
    "BeforeRun",
    "RunView",
    "agents_in_run",
    "before_run",
    "cancelled_and_scratchpads",
    "get_run",
    "latest_run",
    "list_runs",
    "run_metadata",
    "scratchpad",
    "scratchpads",
    "stage_submit",
    "submit",
    "wait_for_runs",
]


RunView = dict[str, str]


@refuse_when_full
def submit(
    client: redis.Redis, keys: Keys, task: Task, *, record_ttl_s: int = 0,
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN, events_ttl_s: int = MARKER_TTL_S,
    metadata: Mapping[str, str] | None = None, budget: Budget | None = None,
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
    stage_submit(pipe, keys, task, record_ttl_s=record_ttl_s, events_maxlen=events_maxlen, events_ttl_s=events_ttl_s,
                 metadata=metadata, budget=budget)
    ensure_group_once(client, keys.run_stream(task.workflow, task.role, task.run_id, task.priority),
                      keys.group(task.role))
    pipe.execute()
    return task.run_id


def stage_submit(
    pipe: Any, keys: Keys, task: Task, *, record_ttl_s: int = 0, events_maxlen: int = DEFAULT_EVENTS_MAXLEN,
    events_ttl_s: int = MARKER_TTL_S, metadata: Mapping[str, str] | None = None, budget: Budget | None = None,
) -> None:
    """Queue on ``pipe`` the writes of :func:`submit` for ``task`` (checked first; the caller executes
    the pipeline and has made sure the task stream's group exists)."""
    payload = encode(task)
    decode(payload)
    stream = keys.run_stream(task.workflow, task.role, task.run_id, task.priority)
    p = keys.partition(task.run_id)
    record: dict[Any, Any] = {
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
    record.update(budget_fields(budget))
    if metadata:
        record["metadata"] = _encode_json(dict(metadata))
    pipe.hset(keys.run(task.run_id), mapping=record)
    if record_ttl_s:
        pipe.expire(keys.run(task.run_id), record_ttl_s)
    pipe.zadd(keys.runs(p), {task.run_id: task.created_at})
    pipe.xadd(stream, {"msg": payload})
    queued = Queued(run_id=task.run_id, at=task.created_at, role=task.role, hop=task.hop, workflow=task.workflow,
                    task=task.task)
    append_events(pipe, keys, task.run_id, [queued], maxlen=events_maxlen, ttl_s=events_ttl_s)


_decode_json = msgspec.json.Decoder().decode
_encode_json = msgspec.json.Encoder().encode
_decode_metadata = msgspec.json.Decoder(dict[str, str]).decode


def run_metadata(record: Mapping[str, str]) -> dict[str, str]:
    """The ``metadata`` a run was submitted with, from its record (empty when none or unreadable)."""
    raw = record.get("metadata")
    if not raw:
        return {}
    try:
        return _decode_metadata(raw)
    except msgspec.DecodeError:
        return {}

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
    """The run record as strings, or None when there is no such run."""
    raw = client.hgetall(keys.run(run_id))
    return {as_text(k): as_text(v) for k, v in raw.items()} if raw else None


def list_runs(client: redis.Redis, keys: Keys, limit: int = 20) -> list[str]:
    """The newest run ids, newest first."""
    scored: list[tuple[float, str]] = []
    for p in range(keys.partitions):
        rows: Any = client.zrevrange(keys.runs(p), 0, limit - 1, withscores=True)
        for member, score in rows:
            scored.append((score, as_text(member)))
    scored.sort(reverse=True)
    return [run_id for _, run_id in scored[:limit]]


def latest_run(client: redis.Redis, keys: Keys) -> str | None:
    """The newest run id, if any."""
    runs = list_runs(client, keys, 1)
    return runs[0] if runs else None


def agents_in_run(client: redis.Redis, keys: Keys, run_id: str) -> list[str]:
    """Agents that wrote a scratchpad in ``run_id``, in the order they first wrote."""
    return [as_text(a) for a in client.zrange(keys.pads(run_id), 0, -1)]


def scratchpad(client: redis.Redis, keys: Keys, run_id: str, agent: str) -> list[dict[str, Any]]:
    """An agent's scratchpad entries in one run, oldest first."""
    return _pad_entries(client.hgetall(keys.pad(run_id, agent)))


def scratchpads(
    client: redis.Redis, keys: Keys, pads: Sequence[tuple[str, str]]
) -> list[list[dict[str, Any]]]:
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
) -> tuple[list[bool], list[list[dict[str, Any]]]]:
    """What a worker reads before running a batch, in one round trip: which of ``run_ids`` are
    cancelled, and the scratchpads of the ``(run_id, agent)`` pairs in ``pads``."""
    read = before_run(client, keys, run_ids, pads, budgets=False)
    return read.cancelled, read.pads


@dataclass(frozen=True, slots=True)
class BeforeRun:
    """What ``before_run`` read: cancelled flags and budget flags (by run id, in order) and scratchpads."""

    cancelled: list[bool]
    pads: list[list[dict[str, Any]]]
    limited: list[bool]
    """Runs whose model calls must be reserved first (``broker.budget.needs_reservation``); a run
    without model limits skips the reservation, and its usage is counted with its commit."""


def before_run(
    client: redis.Redis, keys: Keys, run_ids: Sequence[str], pads: Sequence[tuple[str, str]], *, budgets: bool = True,
    started: Sequence[bytes] = (), events_maxlen: int = DEFAULT_EVENTS_MAXLEN, events_ttl_s: int = MARKER_TTL_S,
) -> BeforeRun:
    """Everything a worker reads before running a batch, in one round trip: which of ``run_ids``
    are cancelled, the scratchpads of the ``(run_id, agent)`` pairs in ``pads`` and (``budgets``)
    which runs have model-call limits (``limited``; all False without ``budgets``).

    ``started`` (one encoded event per run id, ``b""`` for none) are the hops' ``hop_started``
    events: each is appended to its run's log in the same round trip unless the run is cancelled
    (``lua/started.lua``, one call per partition), so a hop is seen starting before its model call
    without a write of its own, and a cancelled run's log gets none.
    """
    if not run_ids and not pads:
        return BeforeRun([], [], [])
    if started and len(started) != len(run_ids):
        raise ValueError("before_run: one started event (or b'') per run id")
    pipe = client.pipeline(transaction=False)
    if started:
        _started.ensure_loaded(client)
        calls = _started_calls(keys, run_ids, started, events_maxlen, events_ttl_s)
        for script_keys, args in calls:
            _started.queue(pipe, client, script_keys, args)
        groups = [[str(a) for a in args[2 : 2 + (len(k) - 1) // 2]] for k, args in calls]
    else:
        by_p = keys.by_partition(run_ids)
        for p, ids in by_p.items():
            pipe.smismember(keys.cancelled(p), ids)
        groups = list(by_p.values())
    for run_id, agent in pads:
        pipe.hgetall(keys.pad(run_id, agent))
    unique = list(dict.fromkeys(run_ids)) if budgets else []
    for run_id in unique:
        pipe.hmget(keys.run(run_id), RESERVE_FIELDS)
    replies = pipe.execute(raise_on_error=False)
    if started:
        for i, (script_keys, args) in enumerate(calls):
            if is_missing(replies[i]):  # the server lost the library: one call loads it again
                library().forget(client)
                replies[i] = _started(client, script_keys, args)
    for r in replies:
        if isinstance(r, Exception):
            raise r
    flags = cancelled_flags(run_ids, groups, replies[: len(groups)])
    n = len(groups) + len(pads)
    read_pads = [_pad_entries(raw) for raw in replies[len(groups) : n]]
    limited = dict(zip(unique, (needs_reservation(r) for r in replies[n:]), strict=True))
    return BeforeRun(flags, read_pads, [limited.get(r, False) for r in run_ids])


_started = LuaScript("started.lua")


def _started_calls(keys: Keys, run_ids: Sequence[str], started: Sequence[bytes], maxlen: int,
                   ttl_s: int) -> list[tuple[list[str], list[str | bytes | int]]]:
    """``(keys, args)`` of one ``started.lua`` call per partition of ``run_ids``."""
    by_p: dict[int, list[tuple[str, bytes]]] = {}
    for run_id, event in zip(run_ids, started, strict=True):
        by_p.setdefault(keys.partition(run_id), []).append((run_id, event))
    calls: list[tuple[list[str], list[str | bytes | int]]] = []
    for p, items in by_p.items():
        script_keys = [keys.cancelled(p), *(keys.events(r) for r, _ in items), *(keys.run(r) for r, _ in items)]
        calls.append((script_keys, [maxlen, ttl_s, *(r for r, _ in items), *(e for _, e in items)]))
    return calls


def cancelled_flags(run_ids: Sequence[str], groups: list[list[str]], replies: list[Any]) -> list[bool]:
    """The flags of ``run_ids`` in order, from one SMISMEMBER reply per group of ids."""
    flags: dict[str, bool] = {}
    for ids, reply in zip(groups, replies, strict=True):
        flags.update(zip(ids, (bool(f) for f in reply), strict=True))
    return [flags[r] for r in run_ids]


def _pad_entries(raw: Mapping[Any, Any]) -> list[dict[str, Any]]:
    if not raw:
        return []
    ordered = sorted(raw.items(), key=lambda kv: entry_id_key(as_text(kv[0])))
    entries: list[dict[str, Any]] = [_decode_json(v) for _, v in ordered]
    return entries


def wait_for_runs(
    client: redis.Redis, keys: Keys, run_ids: Iterable[str], *, timeout: float | None = None,
    poll_s: float = 1.0,
) -> dict[str, RunView]:
    """Block until every run is finished (done, failed or cancelled) or ``timeout`` passes.

    Wakes on the results streams and reads the records of the runs reported there; the records of
    every run still waited for are read first, and again after a quiet ``poll_s`` only, so a result
    published before the wait began is not missed and a wait for many runs costs a bounded number
    of reads per run. Returns the records of the finished runs.
    """
    pending = set(run_ids)
    finished: dict[str, RunView] = {}
    deadline = None if timeout is None else time.monotonic() + timeout
    cursors = {keys.results(p): "$" for p in range(keys.partitions)}
    check: set[str] = set(pending)
    while True:
        for run_id, rec in _records(client, keys, check).items():
            if rec.get("status") in TERMINAL_STATUSES:
                finished[run_id] = rec
                pending.discard(run_id)
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


def _records(client: redis.Redis, keys: Keys, run_ids: Iterable[str], page: int = 1000) -> dict[str, RunView]:
    """The records of ``run_ids`` that exist, read in pipelined pages."""
    ids = list(run_ids)
    found: dict[str, RunView] = {}
    for start in range(0, len(ids), page):
        chunk = ids[start:start + page]
        pipe = client.pipeline(transaction=False)
        for run_id in chunk:
            pipe.hgetall(keys.run(run_id))
        for run_id, raw in zip(chunk, pipe.execute(), strict=True):
            if raw:
                found[run_id] = {as_text(k): as_text(v) for k, v in raw.items()}
    return found


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
