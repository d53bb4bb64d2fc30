"""What a worker reads before running a batch, in one round trip: which runs are cancelled, the
scratchpads its agents read, which runs have model-call limits and their tenants; with the hops'
``hop_started`` events written in the same round trip (``lua/started.lua``)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from . import direct
from .budget import RESERVE_FIELDS, needs_reservation
from .keys import Keys
from .pads import PadEntry, pad_entries
from .scripts import LuaScript, is_missing, library
from .text import as_text

__all__ = ["BeforeRun", "before_run", "cancelled_and_scratchpads", "cancelled_flags", "started_call"]


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
    read_pads = [pad_entries(raw) for raw in replies[len(groups) : n]]
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
    calls = [started_call(keys, p, items, [pads[j] for j in pads_of[p]], fields) for p, items in by_p.items()]
    lib = library()
    commands: list[list[Any]] = [lib.command(client, "started", k, a) for k, a in calls]
    commands += [["HGETALL", keys.pad(*pads[j])] for j in apart]
    replies = direct.pipeline(client, commands)  # on the thread's held connection (broker/direct.py)
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
            read_pads[j] = pad_entries(_pairs(raw))
    for j, raw in zip(apart, replies[len(calls):], strict=True):
        read_pads[j] = pad_entries(raw)
    return [flags[r] for r in run_ids], read_pads, records


def started_call(keys: Keys, partition: int, items: Sequence[tuple[str, bytes]], pads: Sequence[tuple[str, str]],
                 fields: Sequence[str]) -> tuple[list[str], list[str | bytes | int]]:
    """``(keys, args)`` of the ``started`` function call for the runs of one partition: ``items`` are
    ``(run_id, hop_started event or b"")``, ``pads`` the ``(run_id, agent)`` scratchpads to read
    there, ``fields`` the record fields to read (``lua/started.lua``)."""
    kept = keys.retention
    mine = [keys.pad(*pad) for pad in pads]
    script_keys = [keys.cancelled(partition), *(keys.events(r) for r, _ in items), *(keys.run(r) for r, _ in items),
                   *mine]
    return script_keys, [kept.events_maxlen, kept.events_ttl_s, len(fields), len(mine), *fields,
                         *(r for r, _ in items), *(e for _, e in items)]


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
