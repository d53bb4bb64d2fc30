"""Cron schedules of runs: adding them (cron checked by croniter) and firing their ticks.

:func:`fire_due` is one pass of a scheduler over every schedule. Every worker process calls it in its
upkeep thread (``agents/upkeep.py``; ``BATON_WORKER_SCHEDULES=0`` turns that off) and ``baton
scheduler`` in its loop: any number of schedulers may run at once. Each due tick is
submitted through the one submit path with the idempotency key ``schedule:NAME:TICK``: whichever
scheduler gets there first starts the tick's run, every other one gets the same run id back. A
tick is due when it falls after the schedule's ``last_tick`` (or its creation) and at most
``catchup_s`` seconds before now (never less than :data:`GRACE_S`): after downtime, missed ticks
inside the window fire once each, older ones are skipped. A tick that finds the schedule's
previous run still going follows the schedule's ``overlap`` policy (``protocol/schedules.py``).
One scheduler at a time decides a schedule's ticks (a lease of :data:`LEASE_MS`, shorter than the
grace, so a scheduler killed while holding it costs no tick); the others skip it for that pass.
"""

from __future__ import annotations

import itertools
import logging
import math
import re
import time
from collections.abc import Iterator

import msgspec
from croniter import croniter

from ..broker import Keys, Redis, run_record
from ..broker import schedules as store
from ..broker.drive import Op, awaiting, blocking
from ..protocol import ProtocolError, new_id
from ..protocol.schedules import OVERLAPS, Overlap, Schedule
from .settings import Settings
from .submit import submit_run
from .workflow import named
from .workflow.loader import named_op

__all__ = ["GRACE_S", "LEASE_MS", "aadd_schedule", "add_schedule", "add_schedule_op", "aset_paused", "fire_due",
           "next_ticks", "parse_duration", "set_paused", "set_paused_op", "ticks"]

log = logging.getLogger(__name__)

GRACE_S = 5.0
"""The catch-up window's floor: how late a scheduler may be for a tick without skipping it."""

LEASE_MS = 2000
"""How long one scheduler may hold a schedule's ticks (well under :data:`GRACE_S`)."""

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*$")
_UNIT = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    """``"90"``, ``"30s"``, ``"10m"``, ``"2h"``, ``"1d"`` in seconds; ``ValueError`` otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"bad duration {text!r}: use a number with s, m, h or d")
    return float(match[1]) * _UNIT[match[2]]


def ticks(cron: str, after: float, until: float) -> Iterator[float]:
    """The ticks of ``cron`` (UTC) after ``after`` up to and including ``until``."""
    it = croniter(cron, after)
    while (tick := float(it.get_next(float))) <= until:
        yield tick


def next_ticks(cron: str, count: int = 3, after: float | None = None) -> list[float]:
    """The next ``count`` ticks of ``cron`` (UTC) after ``after`` (default: now): what a person
    checks a new schedule against (a 6th field is seconds, last: ``"* * * * * */10"`` is every 10 s)."""
    return list(itertools.islice(ticks(cron, time.time() if after is None else after, math.inf), count))


def add_schedule_op(keys: Keys, name: str, cron: str, *, task: str, workflow: str = "",
                    overlap: Overlap = "skip", catchup_s: float = 60.0, tenant: str = "") -> Op[Schedule]:
    """Create or replace the schedule ``name`` (its firing state is kept); ``ProtocolError`` when the
    cron expression, the workflow, the policy or the name is wrong."""
    if not croniter.is_valid(cron):
        raise ProtocolError(f"bad cron expression {cron!r}")
    if overlap not in OVERLAPS:
        raise ProtocolError(f"overlap must be one of {', '.join(OVERLAPS)}, not {overlap!r}")
    try:
        yield from named_op(workflow or None, keys=keys)
    except Exception as exc:  # noqa: BLE001 - the lookup's own message is the reason
        raise ProtocolError(str(exc)) from None
    old = yield from store.get_schedule_op(keys, name)
    try:
        schedule = msgspec.convert({"name": name, "cron": cron, "workflow": workflow, "task": task,
                                    "overlap": overlap, "catchup_s": catchup_s,
                                    "paused": old.paused if old else False,
                                    "created_at": old.created_at if old else time.time(), "tenant": tenant},
                                   Schedule)
    except msgspec.ValidationError as exc:
        raise ProtocolError(str(exc)) from None
    yield from store.save_schedule_op(keys, schedule)
    return schedule


def set_paused_op(keys: Keys, name: str, paused: bool) -> Op[Schedule | None]:
    """Pause or resume ``name``; ``None`` when there is none. A resumed schedule fires only ticks
    from now on (ticks while paused are skipped)."""
    old = yield from store.get_schedule_op(keys, name)
    if old is None:
        return None
    new = msgspec.structs.replace(old, paused=paused)
    yield from store.save_schedule_op(keys, new)
    if not paused:
        yield from store.mark_tick_op(keys, name, time.time())
    return new


add_schedule = blocking(add_schedule_op)
aadd_schedule = awaiting(add_schedule_op)
set_paused = blocking(set_paused_op)
aset_paused = awaiting(set_paused_op)


def _running(redis: Redis, keys: Keys, run_id: str) -> bool:
    record = run_record(redis, keys, run_id) if run_id else None
    return record is not None and not record.ended


def _fire(redis: Redis, keys: Keys, settings: Settings, schedule: Schedule, tick: float) -> str | None:
    try:
        wf = named(schedule.workflow or None, client=redis, keys=keys)
        run_id = submit_run(redis, keys, settings, wf, schedule.task,
                            idempotency_key=f"schedule:{schedule.name}:{tick:.0f}",
                            metadata={"schedule": schedule.name, "tick": f"{tick:.0f}"}, tenant=schedule.tenant)
    except Exception as exc:  # noqa: BLE001 - a refused tick is logged, the scheduler lives on
        log.warning("schedule %s: tick %.0f not started: %s", schedule.name, tick, exc)
        return None
    store.record_run(redis, keys, schedule.name, tick, run_id)
    return run_id


def _fire_schedule(redis: Redis, keys: Keys, settings: Settings, schedule: Schedule, now: float) -> list[str]:
    state = store.schedule_state(redis, keys, schedule.name)
    started: list[str] = []
    last_run = state.last_run
    if schedule.overlap == "buffer_one" and state.buffered and not _running(redis, keys, last_run):
        if run_id := _fire(redis, keys, settings, schedule, state.buffered):
            started.append(run_id)
            last_run = run_id
        store.take_buffered(redis, keys, schedule.name, state.buffered)
    start = max(state.last_tick or schedule.created_at, now - max(schedule.catchup_s, GRACE_S))
    for tick in ticks(schedule.cron, start, now):
        if schedule.overlap == "allow" or not _running(redis, keys, last_run):
            if run_id := _fire(redis, keys, settings, schedule, tick):
                started.append(run_id)
                last_run = run_id
        elif schedule.overlap == "buffer_one":
            store.buffer_tick(redis, keys, schedule.name, tick)
        store.mark_tick(redis, keys, schedule.name, tick)
    return started


def fire_due(redis: Redis, keys: Keys, settings: Settings, now: float | None = None) -> list[str]:
    """One pass over every schedule that is not paused and not held by another scheduler: start
    each due tick's run (see the module); return the run ids this pass submitted (a tick another
    scheduler started is among them too)."""
    at = time.time() if now is None else now
    started: list[str] = []
    token = new_id()
    for schedule in store.list_schedules(redis, keys):
        if schedule.paused or not store.hold_schedule(redis, keys, schedule.name, token, LEASE_MS):
            continue
        try:
            started += _fire_schedule(redis, keys, settings, schedule, at)
        finally:
            store.release_schedule(redis, keys, schedule.name, token)
    return started
