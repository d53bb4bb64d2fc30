"""Schedules in Redis: their specs (one hash), and each one's firing state.

The state hash of a schedule holds ``last_tick`` (the newest tick any scheduler has dealt with),
``last_run``/``last_run_tick`` (the run its newest fired tick started) and ``buffered`` (a tick held
by the ``buffer_one`` policy). Every update is monotonic or compare-and-set, so any number of
schedulers may apply them in any order; that a tick starts at most one run is the submit's
idempotency key (``schedule:NAME:TICK``), not this state. A short lease per schedule
(:func:`hold_schedule`) lets one scheduler at a time decide its ticks, so the overlap policies see
each other's runs; a holder that dies only delays the next pass by the lease.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import msgspec
import redis

from ..protocol.schedules import Schedule
from .drive import Op, awaiting, blocking, execute, run
from .keys import Keys
from .lenient import decode_hash
from .text import as_text

__all__ = [
    "ScheduleState", "adelete_schedule", "alist_schedules", "buffer_tick", "delete_schedule", "delete_schedule_op",
    "get_schedule", "get_schedule_op", "hold_schedule", "list_schedules", "list_schedules_op", "mark_tick",
    "mark_tick_op", "record_run", "release_schedule", "save_schedule", "save_schedule_op", "schedule_state",
    "take_buffered",
]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Schedule).decode


class ScheduleState(msgspec.Struct, frozen=True, kw_only=True):
    """Where a schedule stands."""

    last_tick: float = 0.0
    last_run: str = ""
    last_run_tick: float = 0.0
    buffered: float = 0.0


def save_schedule_op(keys: Keys, schedule: Schedule) -> Op[None]:
    """Create or replace ``schedule``."""
    yield lambda c: c.hset(keys.schedules(), schedule.name, _encode(schedule))


def get_schedule_op(keys: Keys, name: str) -> Op[Schedule | None]:
    """The schedule called ``name``, if any."""
    raw: Any = yield lambda c: c.hget(keys.schedules(), name)
    return None if raw is None else _decode(raw)


def list_schedules_op(keys: Keys) -> Op[list[Schedule]]:
    """Every schedule, by name."""
    raw: Any = yield lambda c: c.hgetall(keys.schedules())
    return sorted((_decode(v) for v in raw.values()), key=lambda s: s.name)


def delete_schedule_op(keys: Keys, name: str) -> Op[bool]:
    """Delete ``name`` and its state; whether it existed."""
    pipe = yield lambda c: c.pipeline(transaction=True)
    pipe.hdel(keys.schedules(), name)
    pipe.delete(keys.schedule_state(name))
    return bool((yield execute(pipe))[0])


save_schedule = blocking(save_schedule_op)
get_schedule = blocking(get_schedule_op)
list_schedules = blocking(list_schedules_op)
alist_schedules = awaiting(list_schedules_op)
delete_schedule = blocking(delete_schedule_op)
adelete_schedule = awaiting(delete_schedule_op)


def schedule_state(client: redis.Redis, keys: Keys, name: str) -> ScheduleState:
    """The firing state of ``name`` (zeros before its first tick)."""
    raw: Any = client.hgetall(keys.schedule_state(name))
    return decode_hash(raw, ScheduleState)


def _update(keys: Keys, name: str, change: Callable[[dict[str, str]], dict[str, str]]) -> Op[None]:
    """Change the state of ``name`` as ``change`` says (given its fields; ``""`` drops one), in a ``WATCH``ed
    transaction."""
    key = keys.schedule_state(name)
    pipe = yield lambda c: c.pipeline(transaction=True)
    try:
        while True:
            try:
                yield lambda _: pipe.watch(key)
                fields = {as_text(k): as_text(v) for k, v in (yield lambda _: pipe.hgetall(key)).items()}
                new = change(fields)
                pipe.multi()
                if kept := {k: v for k, v in new.items() if v != ""}:
                    pipe.hset(key, mapping=kept)
                if dropped := [k for k, v in new.items() if v == ""]:
                    pipe.hdel(key, *dropped)
                yield execute(pipe)
                return
            except redis.WatchError:
                continue
    finally:
        yield lambda _: pipe.reset()


def mark_tick_op(keys: Keys, name: str, tick: float) -> Op[None]:
    """Raise ``last_tick`` to ``tick`` (never lowers it)."""
    yield from _update(keys, name, lambda f: {"last_tick": repr(tick)} if tick > float(f.get("last_tick") or 0) else {})


mark_tick = blocking(mark_tick_op)


def record_run(client: redis.Redis, keys: Keys, name: str, tick: float, run_id: str) -> None:
    """Note that ``tick`` started ``run_id``, if no newer tick started one already."""
    run(_update(keys, name, lambda f: {"last_run": run_id, "last_run_tick": repr(tick)}
                if tick >= float(f.get("last_run_tick") or 0) else {}), client)


def buffer_tick(client: redis.Redis, keys: Keys, name: str, tick: float) -> None:
    """Hold ``tick`` for later unless a tick is held already (``buffer_one``)."""
    client.hsetnx(keys.schedule_state(name), "buffered", repr(tick))


def take_buffered(client: redis.Redis, keys: Keys, name: str, tick: float) -> None:
    """Drop the held tick if it is still ``tick``."""
    run(_update(keys, name, lambda f: {"buffered": ""} if f.get("buffered") == repr(tick) else {}), client)


def _lease(keys: Keys, name: str) -> str:
    return f"{keys.schedule_state(name)}:lease"


def hold_schedule(client: redis.Redis, keys: Keys, name: str, token: str, lease_ms: int) -> bool:
    """Take the lease on deciding ``name``'s ticks for ``lease_ms`` (``SET NX PX``); whether we got it."""
    return bool(client.set(_lease(keys, name), token, nx=True, px=lease_ms))


def release_schedule(client: redis.Redis, keys: Keys, name: str, token: str) -> None:
    """Give the lease back if ``token`` still holds it (a lease that ran out may be another's now)."""
    key = _lease(keys, name)

    def apply(pipe: Any) -> None:
        if as_text(pipe.get(key) or b"") == token:
            pipe.multi()
            pipe.delete(key)

    client.transaction(apply, key)
