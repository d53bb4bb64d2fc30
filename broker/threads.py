"""Threads: conversations that span runs, one running turn at a time (``protocol/threads.py``).

A thread lives in one partition (``Keys.thread``): its state hash (``active``: the running turn, and
its times), the list of its finished turns and the list of its waiting turns; every run of the
thread gets an id in that partition (:func:`thread_run_id`), so each transition is one call of the
Functions library touching one hash slot:

- ``thread_submit`` (:func:`submit_turn`) writes the new run's record and either starts it (its task
  goes to its stream), queues it, refuses it (:class:`ThreadBusy`) or cancels the running turn and
  starts it, as the policy says. Racing submits are serialized by Redis; a submit that read a running
  turn that is gone by the time its call runs reads again.
- ``thread_end`` (:func:`release`) runs when a run ends (``broker/ends.py``): the run's turn joins the
  history and the next waiting turn starts. It checks that the run is the thread's running turn and has
  ended, so it may be called any number of times, by anyone (the worker that ended the run, a cancel,
  the janitor's :func:`sweep` after a crash in between).

Thread state expires ``Retention.marker_s`` after its last write (``BATON_MARKER_TTL_S``, or the run
records' TTL when that is shorter).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis

from ..protocol import Budget, Cancelled, Task, ThreadPolicy, Turn, encode, encode_event
from ..protocol.threads import unscoped_thread
from .backpressure import refuse_when_full_op
from .drive import Call, Op, blocking, execute
from .idempotency import KeyHeld
from .keys import Keys
from .lenient import decode_hash
from .records import runs_over
from .runs import ensure_group_op, queued_event, run_fields, task_stream
from .scripts import LuaScript
from .tenants import stage_tenant_run
from .text import as_text

__all__ = [
    "ThreadBusy", "ThreadInfo", "get_thread", "get_thread_op", "history", "list_threads", "release", "release_op",
    "run_history", "seen_by", "submit_turn", "submit_turn_op", "sweep", "tenant_threads", "tenant_threads_op",
    "thread_run_id",
]

_submit = LuaScript("thread_submit.lua")
_end = LuaScript("thread_end.lua")
_turns = msgspec.json.Decoder(Turn)
_queued = msgspec.json.Decoder(dict[str, str])


class ThreadBusy(Exception):
    """A message to a thread that runs a turn, under the ``reject`` policy: nothing was written."""

    def __init__(self, thread_id: str, active: str) -> None:
        super().__init__(f"thread {thread_id!r} is running run {active}; policy 'reject' refuses the message")
        self.thread_id = thread_id
        self.active = active


class ThreadInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A thread as stored: its running turn (``""``: idle), waiting runs and finished turns."""

    thread_id: str
    active: str = ""
    queued: list[str] = msgspec.field(default_factory=list)
    turns: list[Turn] = msgspec.field(default_factory=list)
    created_at: float = 0.0
    updated_at: float = 0.0
    expires_in_s: int | None = None
    """Seconds until the thread expires unless written again (``None``: kept)."""


def thread_run_id(keys: Keys, thread_id: str) -> str:
    """A fresh run id in the partition of ``thread_id`` (every run of a thread lives there)."""
    return keys.run_id_in(keys.thread_partition(thread_id))


@refuse_when_full_op
def submit_turn_op(keys: Keys, task: Task, thread_id: str, policy: ThreadPolicy, *,
                   metadata: Mapping[str, str] | None = None, budget: Budget | None = None,
                   idempotency: tuple[str, int] | None = None) -> Op[str]:
    """Submit ``task`` (a new run's first task, its id from :func:`thread_run_id`) as a turn of
    ``thread_id`` under ``policy``; return ``"started"`` or ``"queued"``. ``ThreadBusy`` under
    ``reject`` while a turn runs (nothing written). ``idempotency``: an idempotency key and its TTL
    (seconds), set to the run id in the step that writes the turn; ``broker.idempotency.KeyHeld``
    (nothing written) when it names another run."""
    if keys.partition(task.run_id) != keys.thread_partition(thread_id):
        raise ValueError(f"run {task.run_id} is not in the partition of thread {thread_id!r}; use thread_run_id")
    payload = encode(task)
    stream = task_stream(keys, task)
    yield from ensure_group_op(stream, keys.group(task.role))
    pairs = [x for k, v in run_fields(task, metadata=metadata, budget=budget).items() for x in (k, v)]
    kept, p = keys.retention, keys.partition(task.run_id)
    thread = keys.thread(thread_id)
    idem_keys = [keys.idempotency(idempotency[0], p)] if idempotency else []
    idem_args = [idempotency[1]] if idempotency else []
    active = as_text((yield lambda c: c.hget(thread, "active")) or b"")
    while True:
        now = time.time()
        cancelled = encode_event(Cancelled(run_id=active, at=now, reason=f"interrupted by run {task.run_id}")
                                 ) if active else b""
        other = active or task.run_id
        what, seen = (as_text(x) for x in (yield from _submit.op(
            [thread, keys.threads(p), keys.run(task.run_id), keys.runs(p), stream, keys.events(task.run_id),
             keys.cancelled(p), keys.run(other), keys.events(other), *idem_keys],
            [thread_id, task.run_id, policy, active, now, kept.marker_s, kept.record_ttl_s, kept.events_maxlen,
             kept.events_ttl_s, payload, encode_event(queued_event(task)), cancelled, task.created_at,
             len(pairs) // 2, *pairs, *idem_args])))
        if what in ("started", "queued") and task.tenant:  # (the tenant's runs index, as a plain submit has)
            pipe = yield lambda c: c.pipeline(transaction=False)
            stage_tenant_run(pipe, keys, task.tenant, p, task.run_id, task.created_at)
            yield execute(pipe)
        if what == "rejected":
            raise ThreadBusy(thread_id, seen)
        if what == "claimed":
            raise KeyHeld(seen)
        if what == "ended":  # its end was not seen yet (a worker died in between): release it first
            yield from release_op(keys, [seen], thread_id=thread_id)
            active = as_text((yield lambda c: c.hget(thread, "active")) or b"")
        elif what == "moved":
            active = seen
        else:
            return "queued" if what == "exists" else what


submit_turn = blocking(submit_turn_op)


def release_op(keys: Keys, run_ids: Sequence[str], *, thread_id: str | None = None) -> Op[list[str]]:
    """Each of ``run_ids`` that ended as its thread's running turn: its turn joins the thread's history
    and the thread's next waiting turn starts (one pipelined call per run; idempotent). ``thread_id``:
    the runs' thread when known (a run whose record expired is still released). Returns the runs started."""
    if not run_ids:
        return []
    mode = yield from _end.mode_op()
    pipe = yield lambda c: c.pipeline(transaction=False)
    now, ttl = time.time(), keys.retention.marker_s
    for run_id in run_ids:
        p = keys.partition(run_id)
        args: list[Any] = [run_id, keys.tag(p), now, ttl, *([thread_id] if thread_id else [])]
        _end.queue_in(pipe, mode, [keys.run(run_id), keys.threads(p)], args)
    replies = yield lambda _: pipe.execute(raise_on_error=False)
    for r in replies:
        if isinstance(r, Exception):
            raise r
    return [as_text(r) for r in replies if r]


release = blocking(release_op)


def history(client: redis.Redis, keys: Keys, thread_id: str) -> list[Turn]:
    """The finished turns of ``thread_id``, oldest first (empty for an unknown or expired thread)."""
    return [_turns.decode(raw) for raw in client.lrange(keys.thread_turns(thread_id), 0, -1)]


def run_history(client: redis.Redis, keys: Keys, run_id: str) -> list[Turn]:
    """The finished turns of the thread ``run_id`` belongs to, oldest first (empty for a run of no thread)."""
    thread = client.hget(keys.run(run_id), "thread")
    return history(client, keys, as_text(thread)) if thread else []


def get_thread_op(keys: Keys, thread_id: str) -> Op[ThreadInfo | None]:
    """``thread_id`` as stored, with its turns and waiting runs; None when there is no such thread."""
    pipe = yield lambda c: c.pipeline(transaction=False)
    pipe.hgetall(keys.thread(thread_id))
    pipe.lrange(keys.thread_turns(thread_id), 0, -1)
    pipe.lrange(keys.thread_queue(thread_id), 0, -1)
    pipe.ttl(keys.thread(thread_id))
    raw, turns, queue, ttl = yield execute(pipe)
    if not raw:
        return None
    return decode_hash(raw, ThreadInfo, {"thread_id": thread_id, "queued": [_queued.decode(q)["run_id"] for q in queue],
                                         "turns": [_turns.decode(t) for t in turns],
                                         "expires_in_s": int(ttl) if int(ttl) >= 0 else None})


get_thread = blocking(get_thread_op)


def seen_by(info: ThreadInfo | None, tenant: str) -> ThreadInfo | None:
    """``info`` as ``tenant`` sees it (named by its unscoped id); None when it is not ``tenant``'s."""
    if info is None or (name := unscoped_thread(tenant, info.thread_id)) is None:
        return None
    return msgspec.structs.replace(info, thread_id=name)


def tenant_threads_op(keys: Keys, tenant: str, limit: int = 50) -> Op[list[ThreadInfo]]:
    """:func:`list_threads` of ``tenant`` alone, by their unscoped ids (among the newest 10,000
    threads when ``tenant`` is set); every thread when ``tenant`` is empty."""
    if not tenant:
        return (yield from list_threads_op(keys, limit))
    found = (seen_by(t, tenant) for t in (yield from list_threads_op(keys, 10_000)))
    return [t for t in found if t is not None][:limit]


def list_threads_op(keys: Keys, limit: int = 50) -> Op[list[ThreadInfo]]:
    """The most recently written threads, newest first (their turns and queues included)."""
    rows: list[tuple[float, str]] = []
    for p in range(keys.partitions):
        found: Any = yield _newest_threads(keys.threads(p), limit)
        rows += [(float(score), as_text(m)) for m, score in found]
    infos: list[ThreadInfo] = []
    for _, tid in sorted(rows, reverse=True)[:limit]:
        if (info := (yield from get_thread_op(keys, tid))) is not None:
            infos.append(info)
    return infos


def _newest_threads(index: str, limit: int) -> Call:
    return lambda c: c.zrevrange(index, 0, limit - 1, withscores=True)


tenant_threads = blocking(tenant_threads_op)
list_threads = blocking(list_threads_op)


def sweep(client: redis.Redis, keys: Keys, *, page: int = 1000) -> int:
    """Release threads whose running turn ended without its end being seen (a worker killed between
    its commit and the release) or whose record expired, and forget index entries of expired threads;
    return how many threads were released. Reads at most ``page`` threads per partition."""
    released = 0
    for p in range(keys.partitions):
        ids = [as_text(m) for m in client.zrange(keys.threads(p), 0, page - 1)]
        if not ids:
            continue
        pipe = client.pipeline(transaction=False)
        for tid in ids:
            pipe.hget(keys.thread(tid), "active")
        actives = pipe.execute()
        gone = [tid for tid, a in zip(ids, actives, strict=True) if a is None]  # (a thread always has 'active')
        if gone:
            client.zrem(keys.threads(p), *gone)
        busy = [(tid, as_text(a)) for tid, a in zip(ids, actives, strict=True) if a]
        over = runs_over(client, keys, [run_id for _, run_id in busy])
        for (tid, run_id), ended in zip(busy, over, strict=True):
            if ended:
                release(client, keys, [run_id], thread_id=tid)
                released += 1
    return released
