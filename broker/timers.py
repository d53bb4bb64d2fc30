"""Durable timers and signals of code roles: a handler's ``ctx.sleep`` / ``ctx.wait_for`` parks its task.

Parking (``park_waits``; ``lua/wait.lua``, one atomic step per task) acks the task's entry and
stores what it waits for: the wait record (the task itself, the journal call it answers, when it is
due), a member ``"run_id msg_id"`` in its role's due index (``Keys.timers``, scored by the time the
timer, the wait's timeout or the run's deadline falls due; ``+inf`` for none), the task in its run's
waits (``Keys.run_timers``: the signal name it waits for) and the run's status ``waiting``. Nothing
waits in memory: the worker is free, and worker or Redis restarts (with its data) lose nothing.

Waking (``wake_due``) is one pass of a ticker (every worker of the role, on its reclaim timer, and
``baton scheduler``) over an index: each due member is woken by whichever ticker's ``ZREM`` removes
it, and only while its record is still the wait that ticker read (a woken task that parks its next
wait reuses the member), so a wait wakes exactly once however many tick. Waking writes the wait's result into the hop's
call journal (``broker/journal.py``: ``null`` for a sleep, ``{"timed_out": true}`` for a wait past its
timeout; nothing when the run's deadline woke it, which the guard then fails) and puts the same task
back on its stream: the handler runs again from the start, its earlier calls replay from the
journal, and the wait returns its result.

Signals (``send_signal``) go to a run: a wait of the run asking for that name takes it (its data is
journaled as ``{"data": ...}`` and the task goes back on its stream); otherwise it is buffered in
``Keys.signals`` until a wait asks for it (the park step takes the oldest and resumes at once).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import redis

from ..protocol import Task, encode
from ..protocol.events import Waiting, Woken, encode_event
from ..protocol.fields import Name
from .drive import Op, awaiting, blocking
from .entry import Entry
from .errors import NoPermission
from .journal import Recorded
from .keys import Keys
from .lenient import decode_hash
from .records import runs_over, status_ended
from .scripts import LuaScript
from .text import as_text

__all__ = ["DueWait", "ParkedWait", "SignalRefused", "Timers", "WaitPark", "WaitRecord", "WaitResult", "asend_signal",
           "decode_wait", "due_waits", "forget_ended", "list_waits", "park_waits", "send_signal", "send_signal_op",
           "wait_indexes", "wake_due", "wake_waits"]

log = logging.getLogger("baton.timers")

WaitKind = Literal["sleep", "signal"]
WakeReason = Literal["timer", "signal", "timeout", "deadline"]
Value = str | bytes | float | int

_wait = LuaScript("wait.lua")
_encode = msgspec.json.Encoder().encode


class WaitResult(msgspec.Struct, frozen=True, omit_defaults=True):
    """What a wait's journal record holds: the signal's ``data``, or ``timed_out``."""

    data: Any = None
    timed_out: bool = False


class SignalRefused(LookupError):
    """A signal that cannot be sent: ``status`` 404 (no such run) or 409 (the run has ended)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True, slots=True)
class WaitPark:
    """One handler's wait to park: journal call ``seq`` (fingerprint ``fp``) of hop ``hop`` of the
    task of ``entry``; ``name`` is the signal (empty for a sleep); ``until`` when the timer or the
    timeout falls due (None: a wait without timeout)."""

    entry: Entry
    task: Task
    role: str
    kind: WaitKind
    seq: int
    fp: str
    hop: str
    name: str = ""
    until: float | None = None


@dataclass(frozen=True, slots=True)
class ParkedWait:
    """A parked task as ``list_waits`` shows it."""

    run_id: str
    msg_id: str
    workflow: str
    role: str
    kind: str
    name: str
    until: float | None
    deadline: float | None
    requested_at: float
    hop: int


class WaitRecord(msgspec.Struct, frozen=True, kw_only=True):
    """A parked wait as its record (``Keys.timer``) holds it, decoded once (:func:`decode_wait`)."""

    workflow: str = ""
    role: str = ""
    kind: WaitKind = "sleep"
    name: str = ""
    """The signal waited for (empty for a sleep)."""
    until: float | None = None
    deadline: float | None = None
    requested_at: float = 0.0
    task_hop: int = 0
    stream: str = ""
    """The task's stream (empty: none stored, the partition's placeholder stands in)."""
    done_value: bytes = b""
    """The journal record a timer that runs out writes."""
    stamp: tuple[str, str] = ("", "")
    """The journal ``seq`` and ``requested_at`` as stored: a wake goes on only while they are unchanged."""


def decode_wait(raw: Mapping[Any, Any]) -> WaitRecord | None:
    """A wait record from its hash (bytes or strings); None for an empty hash (no wait)."""
    if not raw:
        return None
    fields = {as_text(k): v for k, v in raw.items()}
    stamp = (as_text(fields.get("seq", b"")), as_text(fields.get("requested_at", b"")))
    done = fields.get("done_value", b"")
    return decode_hash(fields, WaitRecord, {"stamp": stamp, "done_value": done.encode() if isinstance(done, str)
                                            else bytes(done)})


_NO_WAIT = WaitRecord()


def _member(run_id: str, msg_id: str) -> str:
    return f"{run_id} {msg_id}"


def _pairs(mapping: Mapping[str, Value]) -> list[Value]:
    flat: list[Value] = [len(mapping)]
    for k, v in mapping.items():
        flat += [k, v]
    return flat


def _common(keys: Keys, now: float) -> list[Value]:
    kept = keys.retention
    return [now, kept.record_ttl_s, kept.events_maxlen, kept.events_ttl_s]


def _script_keys(keys: Keys, task: Task, role: str, stream: str, name: str) -> list[Value]:
    run_id, partition = task.run_id, keys.partition(task.run_id)
    return [keys.timer(run_id, task.id), keys.timers(task.workflow, role, partition), keys.run(run_id), stream,
            keys.journal(run_id, task.id), keys.journal_hops(run_id), keys.events(run_id),
            keys.signals(run_id, name) if name else keys.placeholder(partition), keys.run_timers(run_id)]


def _record(kind: str, fp: str, value: bytes) -> bytes:
    return _encode(Recorded(kind=kind, fp=fp, value=msgspec.Raw(value)))  # type: ignore[arg-type]


def park_waits(client: redis.Redis, keys: Keys, group: str, consumer: str, parks: Sequence[WaitPark], *,
               now: float | None = None) -> list[int]:
    """Park each wait in one atomic step; each one's outcome (``lua/wait.lua``: 1 parked, 3 resumed at
    once by a buffered signal, 0 the entry is no longer ours, 2 the run has ended)."""
    at = time.time() if now is None else now
    return [_park_one(client, keys, group, consumer, p, at) for p in parks]


def _park_one(client: redis.Redis, keys: Keys, group: str, consumer: str, p: WaitPark, at: float) -> int:
    t = p.task
    due = min(x for x in (p.until, t.deadline, math.inf) if x is not None)
    journal_kind = "sleep" if p.kind == "sleep" else "wait"
    done = _record(journal_kind, p.fp, b"null" if p.kind == "sleep" else _encode(WaitResult(timed_out=True)))
    template = _record(journal_kind, p.fp, b'{"data":0}')
    cut = template.rindex(b"0}]")
    record: dict[str, Value] = {
        "run_id": t.run_id, "msg_id": t.id, "workflow": t.workflow, "role": p.role, "kind": p.kind, "name": p.name,
        "until": "" if p.until is None else p.until, "deadline": "" if t.deadline is None else t.deadline,
        "requested_at": at, "hop": p.hop, "task_hop": t.hop, "seq": p.seq, "msg": encode(t), "stream": p.entry.stream,
        "done_value": done, "sig_prefix": template[:cut], "sig_suffix": template[cut + 1:],
    }
    common = dict(run_id=t.run_id, role=p.role, agent=p.role, hop=t.hop, at=at, kind=p.kind, name=p.name,
                  msg_id=t.id)
    waiting = encode_event(Waiting(**common, until=p.until))  # type: ignore[arg-type]
    woken = encode_event(Woken(**common, why="signal"))  # type: ignore[arg-type]
    args: list[Value] = ["park", *_common(keys, at), _member(t.run_id, t.id), t.id, group, consumer, p.entry.id,
                         "+inf" if math.isinf(due) else due, p.name, waiting, woken, *_pairs(record)]
    return int(_wait(client, _script_keys(keys, t, p.role, p.entry.stream, p.name), args))


def wait_indexes(client: redis.Redis, keys: Keys) -> list[str]:
    """Every due index of the deployment (for ``baton scheduler``, which wakes every role's waits)."""
    found = client.scan_iter(match=f"{keys.prefix}:{{p*}}:due:*", count=1000, _type="zset")
    return sorted(as_text(k) for k in found)


@dataclass(frozen=True, slots=True)
class DueWait:
    """A due member of a wait index as one ticker read it: the wait's record at that moment (empty
    when it had none). Waking it (:func:`wake_waits`) acts only while the record is still this one."""

    run_id: str
    msg_id: str
    record: WaitRecord | None


def due_waits(client: redis.Redis, keys: Keys, index: str, *, now: float, limit: int = 200) -> list[DueWait]:
    """The waits of ``index`` due at ``now`` (at most ``limit``) and their records (two round trips)."""
    members = [as_text(m) for m in client.zrangebyscore(index, "-inf", now, start=0, num=limit)]
    ids = [m.split(" ", 1) for m in members if " " in m]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id, msg_id in ids:
        pipe.hgetall(keys.timer(run_id, msg_id))
    return [DueWait(run_id, msg_id, decode_wait(raw))
            for (run_id, msg_id), raw in zip(ids, pipe.execute(), strict=True)]


def wake_waits(client: redis.Redis, keys: Keys, index: str, due: Sequence[DueWait], *, now: float) -> int:
    """Wake each of ``due`` (read by :func:`due_waits`) in one atomic step: how many this call woke.

    The member ``"run_id msg_id"`` names a task, not one wait: a woken task whose handler parks its
    next wait is indexed under the same member. So the step goes on only while the wait's record is
    still the one read (its journal ``seq`` and ``requested_at``) and its ``ZREM`` removes it: a
    ticker whose read is stale (another woke that wait, the task parked again) wakes nothing."""
    woken = 0
    for d in due:
        rec, run_id, msg_id = d.record or _NO_WAIT, d.run_id, d.msg_id
        timer_ran_out = rec.until is not None and now >= rec.until
        why: WakeReason = ("timer" if rec.kind == "sleep" else "timeout") if timer_ran_out else "deadline"
        event = encode_event(Woken(run_id=run_id, role=rec.role, agent=rec.role, hop=rec.task_hop, at=now,
                                   kind=rec.kind, name=rec.name, why=why, msg_id=msg_id))
        stream = rec.stream or keys.placeholder(keys.partition(run_id))
        script_keys: list[Value] = [keys.timer(run_id, msg_id), index, keys.run(run_id), stream,
                                    keys.journal(run_id, msg_id), keys.journal_hops(run_id), keys.events(run_id),
                                    keys.placeholder(keys.partition(run_id)), keys.run_timers(run_id)]
        value = rec.done_value if timer_ran_out else b""
        args: list[Value] = ["wake", *_common(keys, now), _member(run_id, msg_id), msg_id, value, event, *rec.stamp]
        woken += int(_wait(client, script_keys, args)) == 1
    return woken


def wake_due(client: redis.Redis, keys: Keys, index: str, *, now: float | None = None, limit: int = 200) -> int:
    """Wake the waits of ``index`` that are due at ``now``; how many this call woke (a wait another
    ticker took is not counted, nor one whose run has ended: that one is dropped)."""
    at = time.time() if now is None else now
    return wake_waits(client, keys, index, due_waits(client, keys, index, now=at, limit=limit), now=at)


def send_signal_op(keys: Keys, run_id: str, name: str, data: Any = None, *, now: float | None = None) -> Op[bool]:
    """Send signal ``name`` with ``data`` (any JSON value) to ``run_id``: True when a wait took it now,
    False when it is buffered for a later wait. ``SignalRefused`` for an unknown (404) or ended (409)
    run; ``ValueError`` for a bad name."""
    try:
        msgspec.convert(name, Name)
    except msgspec.ValidationError as exc:
        raise ValueError(f"bad signal name {name!r}: {exc}") from None
    at = time.time() if now is None else now
    payload = _encode(data)
    partition = keys.partition(run_id)
    waiting: Any = yield lambda c: c.hgetall(keys.run_timers(run_id))
    msg_id = next((as_text(k) for k, v in sorted(waiting.items()) if as_text(v) == name), "")
    found = decode_wait((yield lambda c: c.hgetall(keys.timer(run_id, msg_id)))) if msg_id else None
    rec = found or _NO_WAIT
    if found is None:
        msg_id = ""
    stream = rec.stream or keys.placeholder(partition)
    index = keys.timers(rec.workflow, rec.role, partition) if msg_id else keys.placeholder(partition)
    event = encode_event(Woken(run_id=run_id, role=rec.role, agent=rec.role, hop=rec.task_hop, at=at,
                               kind="signal", name=name, why="signal", msg_id=msg_id))
    script_keys: list[Value] = [keys.timer(run_id, msg_id or "-"), index, keys.run(run_id), stream,
                                keys.journal(run_id, msg_id or "-"), keys.journal_hops(run_id), keys.events(run_id),
                                keys.signals(run_id, name), keys.run_timers(run_id)]
    args: list[Value] = ["signal", *_common(keys, at), _member(run_id, msg_id) if msg_id else "", msg_id or "-",
                         payload, name, event]
    code = int((yield from _wait.op(script_keys, args)))
    if code == -1:
        raise SignalRefused(404, f"no run {run_id!r} (it never existed or its record expired)")
    if code == -2:
        status = as_text((yield lambda c: c.hget(keys.run(run_id), "status")) or b"")
        raise SignalRefused(409, f"run {run_id!r} has ended ({status}): it takes no more signals")
    return code == 1


send_signal = blocking(send_signal_op)
asend_signal = awaiting(send_signal_op)


def list_waits(client: redis.Redis, keys: Keys, *, limit: int = 100) -> list[ParkedWait]:
    """The parked tasks of every role, soonest due first (at most ``limit``; ended runs' are left out)."""
    rows: list[tuple[float, str]] = []
    for index in wait_indexes(client, keys):
        got: Any = client.zrange(index, 0, limit - 1, withscores=True)
        rows += [(float(score), as_text(member)) for member, score in got]
    rows.sort()
    ids = [m.split(" ", 1) for _, m in rows[:limit] if " " in m]
    if not ids:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id, msg_id in ids:
        pipe.hgetall(keys.timer(run_id, msg_id))
        pipe.hget(keys.run(run_id), "status")
    replies = pipe.execute()
    out: list[ParkedWait] = []
    for (run_id, msg_id), raw, status in zip(ids, replies[0::2], replies[1::2], strict=True):
        rec = decode_wait(raw)
        if rec is None or status_ended(status):
            continue
        out.append(ParkedWait(run_id=run_id, msg_id=msg_id, workflow=rec.workflow, role=rec.role, kind=rec.kind,
                              name=rec.name, until=rec.until, deadline=rec.deadline, requested_at=rec.requested_at,
                              hop=rec.task_hop))
    return out


def forget_ended(client: redis.Redis, keys: Keys, index: str, *, limit: int = 1000) -> int:
    """Drop the waits of ``index`` whose run has ended or expired (a cancelled run's wait without a
    timeout would otherwise stay forever); how many went."""
    members = [as_text(m) for m in client.zrange(index, 0, limit - 1)]
    ids = [m.split(" ", 1) for m in members if " " in m]
    if not ids:
        return 0
    gone = [(r, m) for (r, m), over in zip(ids, runs_over(client, keys, [r for r, _ in ids]), strict=True) if over]
    for run_id, msg_id in gone:
        if client.zrem(index, _member(run_id, msg_id)):
            client.delete(keys.timer(run_id, msg_id))
            client.hdel(keys.run_timers(run_id), msg_id)
    return len(gone)


class Timers:
    """Wakes the due waits of ``indexes`` when ``tick`` is called (a worker: its role's, one per
    partition; ``baton scheduler``: every one, see :func:`wait_indexes`); every ``forget_every_s`` it
    also drops waits of runs that ended (cancelled while waiting)."""

    def __init__(self, client: redis.Redis, keys: Keys, indexes: Sequence[str] | None = None, *,
                 forget_every_s: float = 60.0, rescan_s: float = 10.0) -> None:
        self.client = client
        self.keys = keys
        self.every_role = indexes is None
        """No ``indexes``: every role's, found again every ``rescan_s`` (``baton scheduler``)."""
        self.indexes = list(indexes or ())
        self.rescan_s = rescan_s
        self._next_scan = 0.0
        self.forget_every_s = forget_every_s
        self._next_forget = time.monotonic() + forget_every_s
        self.woken = 0

    def tick(self) -> int:
        """Wake what is due; how many this tick woke. Redis trouble is logged, never raised."""
        try:
            if self.every_role and time.monotonic() >= self._next_scan:
                self._next_scan = time.monotonic() + self.rescan_s
                self.indexes = wait_indexes(self.client, self.keys)
            n = sum(wake_due(self.client, self.keys, index) for index in self.indexes)
            if time.monotonic() >= self._next_forget:
                self._next_forget = time.monotonic() + self.forget_every_s
                for index in self.indexes:
                    forget_ended(self.client, self.keys, index)
        except NoPermission as exc:  # an ACL user without the wait keys: say so once, stop trying
            log.warning("waking timers turned off in this process, Redis refused it: %s", exc)
            self.indexes, self.every_role = [], False
            return 0
        except (redis.RedisError, OSError) as exc:
            log.warning("waking timers failed (%s: %s); retrying at the next tick", type(exc).__name__, exc)
            return 0
        self.woken += n
        return n
