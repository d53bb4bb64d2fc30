"""Tenants in Redis: their published limits, their token usage per quota window, their runs.

The API server (and ``baton tenants apply``) publishes each tenant's limits from the tenants file
to one hash (``Keys.tenants``); submits and workers read them (:func:`tenant_limits`, remembered
for ``LIMITS_CACHE_S`` per process). Tokens a tenant's model calls generate are added to the
current window's counter (:func:`add_tokens`; windows are fixed, ``quota_window_s`` long, counted
from the epoch, and each counter expires after its window). Each run of a tenant is indexed per
partition (``Keys.tenant_runs``, written with the run by ``broker.runs.stage_submit``) so a tenant
lists its own runs without reading anyone else's.

A tenant's ``max_running`` caps its runs running at once: :func:`publish_limits` writes each
partition's share of it to the partition's caps hash (``Keys.tenant_caps``; with ``P`` partitions,
``ceil(max_running / P)`` each), a capped tenant's new run starts only while its running runs
(``Keys.tenant_running``) are fewer, else it waits, queued, in the tenant's queue
(``Keys.tenant_queue``; ``lua/tenant_admit.lua``), and each run's end starts the next
(:func:`release_runs`, called by ``broker/ends.py``; the janitor's :func:`sweep_caps` catches ends a
crash kept it from seeing).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from ..protocol import RunStatus
from ..protocol.tenants import TenantLimits
from .backpressure import SubmitRefused
from .drive import Op, awaiting, blocking, execute
from .keys import Keys
from .records import runs_over
from .scripts import LuaScript, Mode
from .text import as_text

__all__ = [
    "LIMITS_CACHE_S", "QuotaExceeded", "QuotaState", "TenantCounts", "add_tokens", "all_limits", "atenant_run_ids",
    "check_quota", "check_quota_op", "count_runs", "partition_cap", "publish_limits", "quota_state", "release_runs",
    "release_runs_op", "stage_admit", "stage_tenant_run", "sweep_caps", "tenant_limits", "tenant_run_ids",
    "tenant_run_ids_op",
]

LIMITS_CACHE_S = 2.0
"""How long a process trusts the tenant limits it read."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(TenantLimits).decode
log = logging.getLogger("baton.broker")
_cache: dict[tuple[int, str], tuple[float, dict[str, TenantLimits]]] = {}
_lock = threading.Lock()
_admit = LuaScript("tenant_admit.lua")
_end = LuaScript("tenant_end.lua")


def partition_cap(max_running: int, partitions: int) -> int:
    """A partition's share of a tenant's ``max_running`` (0: no cap)."""
    return math.ceil(max_running / partitions) if max_running > 0 else 0


def publish_limits(client: redis.Redis, keys: Keys, limits: Mapping[str, TenantLimits]) -> None:
    """Make ``limits`` the published limits of every tenant (tenants not named lose theirs), and
    each partition's share of their ``max_running`` its caps (queued runs of a tenant whose cap
    went up or away start at the janitor's next sweep, or the tenant's next run's end)."""
    caps = {name: partition_cap(lim.max_running, keys.partitions) for name, lim in limits.items()}
    pipe = client.pipeline(transaction=False)  # (the caps hashes are in every partition's slot)
    pipe.delete(keys.tenants())
    if limits:
        pipe.hset(keys.tenants(), mapping={name: _encode(lim) for name, lim in limits.items()})
    for p in range(keys.partitions):
        pipe.delete(keys.tenant_caps(p))
        if any(caps.values()):
            pipe.hset(keys.tenant_caps(p), mapping={name: cap for name, cap in caps.items() if cap})
    pipe.execute()
    with _lock:
        _cache.clear()


def all_limits_op(keys: Keys) -> Op[dict[str, TenantLimits]]:
    """Every published tenant's limits (read at most every ``LIMITS_CACHE_S`` per client and prefix)."""
    memo = ((yield id), keys.prefix)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(memo)
        if hit is not None and now - hit[0] < LIMITS_CACHE_S:
            return hit[1]
    raw: Any = yield lambda c: c.hgetall(keys.tenants())
    out: dict[str, TenantLimits] = {}
    for name, value in raw.items():
        try:
            out[as_text(name)] = _decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    with _lock:
        _cache[memo] = (now, out)
    return out


all_limits = blocking(all_limits_op)


def tenant_limits_op(keys: Keys, tenant: str) -> Op[TenantLimits | None]:
    """The published limits of ``tenant`` (None: none published, so no limits)."""
    return (yield from all_limits_op(keys)).get(tenant) if tenant else None


tenant_limits = blocking(tenant_limits_op)


def _window(limits: TenantLimits, at: float) -> tuple[int, float]:
    """The number of the quota window holding ``at`` and the seconds until it ends."""
    n, into = divmod(at, limits.quota_window_s)
    return int(n), limits.quota_window_s - into


@dataclass(frozen=True, slots=True)
class QuotaState:
    """A tenant's tokens in the current quota window against its quota."""

    used: int
    quota: int
    window_s: int
    resets_in_s: float

    @property
    def over(self) -> bool:
        """Whether the quota is used up (never, without a quota)."""
        return self.quota > 0 and self.used >= self.quota

    def reason(self, tenant: str) -> str:
        """The one-line reason a submit or a model call of ``tenant`` is refused."""
        return (f"tenant {tenant!r} is over its token quota: {self.used:,} of {self.quota:,} tokens per "
                f"{self.window_s:,} s window (resets in {int(self.resets_in_s) + 1} s)")


def quota_state_op(keys: Keys, tenant: str, limits: TenantLimits, at: float | None = None) -> Op[QuotaState]:
    """``tenant``'s usage in the quota window holding ``at`` (now)."""
    n, left = _window(limits, time.time() if at is None else at)
    raw: Any = yield lambda c: c.get(keys.tenant_usage(tenant, limits.quota_window_s, n))
    used = int(raw or 0)
    return QuotaState(used, limits.quota_tokens, limits.quota_window_s, left)


quota_state = blocking(quota_state_op)


class QuotaExceeded(SubmitRefused):
    """A submit of a tenant whose token quota for the current window is used up."""

    def __init__(self, tenant: str, state: QuotaState) -> None:
        super().__init__(state.reason(tenant), max(1, int(state.resets_in_s) + 1))
        self.tenant = tenant
        self.state = state


def check_quota_op(keys: Keys, tenant: str) -> Op[None]:
    """Refuse (``QuotaExceeded``) a new run of ``tenant`` while its token quota is used up."""
    limits = yield from tenant_limits_op(keys, tenant)
    if limits is None or not limits.quota_tokens:
        return
    state = yield from quota_state_op(keys, tenant, limits)
    if state.over:
        raise QuotaExceeded(tenant, state)


check_quota = blocking(check_quota_op)


def add_tokens(client: redis.Redis, keys: Keys, counts: Mapping[str, int], at: float | None = None) -> None:
    """Add each tenant's generated tokens in ``counts`` to its current window (every tenant is
    counted: ``baton tenants`` shows usage without a quota too; the window is the tenant's own, or a day)."""
    counts = {t: n for t, n in counts.items() if t and n > 0}
    if not counts:
        return
    limits = all_limits(client, keys)
    now = time.time() if at is None else at
    pipe = client.pipeline(transaction=False)
    for tenant, n in counts.items():
        lim = limits.get(tenant) or TenantLimits()
        window, _ = _window(lim, now)
        key = keys.tenant_usage(tenant, lim.quota_window_s, window)
        pipe.incrby(key, n)
        pipe.expire(key, lim.quota_window_s + 3600)
    pipe.execute()


def stage_tenant_run(pipe: Any, keys: Keys, tenant: str, partition: int, run_id: str, created_at: float) -> None:
    """Queue on ``pipe`` the index entry of a new run of ``tenant`` (in the run's partition slot),
    dropping entries older than the records' lifetime, and the tenant in the partition's tenant set
    (workers read the task streams of the tenants listed there: ``broker/fairshare.py``)."""
    pipe.sadd(keys.tenant_set(partition), tenant)
    key = keys.tenant_runs(tenant, partition)
    pipe.zadd(key, {run_id: created_at})
    if ttl := keys.retention.record_ttl_s:
        pipe.zremrangebyscore(key, "-inf", f"({created_at - ttl}")
        pipe.expire(key, ttl)


def stage_admit(pipe: Any, mode: Mode, keys: Keys, tenant: str, run_id: str, stream: str,
                payload: bytes) -> None:
    """Queue on ``pipe`` (of a server whose library runs as ``mode``) a new run's task of ``tenant``: to
    ``stream``, or to the tenant's queue while its running runs fill its cap (``lua/tenant_admit.lua``)."""
    p = keys.partition(run_id)
    _admit.queue_in(pipe, mode, [keys.tenant_caps(p), keys.tenant_running(tenant, p), keys.tenant_queue(tenant, p),
                                   stream, keys.run(run_id)], [tenant, run_id, payload])


def release_runs_op(keys: Keys, run_ids: Sequence[str], tenants: Mapping[str, str] | None = None) -> Op[list[str]]:
    """Each of ``run_ids`` (ended) leaves its tenant's running runs, and queued runs of the tenant
    start while its cap allows (one pipelined call per run; idempotent). ``tenants``: each run's
    tenant when the caller knows it (runs of none are skipped; else each record says). Returns
    the runs started."""
    calls = [(r, tenants.get(r, "") if tenants is not None else "") for r in run_ids]
    if tenants is not None:
        calls = [(r, t) for r, t in calls if t]
    if not calls:
        return []
    mode = yield from _end.mode_op()
    pipe = yield lambda c: c.pipeline(transaction=False)
    for run_id, tenant in calls:
        p = keys.partition(run_id)
        _end.queue_in(pipe, mode, [keys.run(run_id), keys.tenant_caps(p)], [run_id, keys.tag(p), tenant])
    started: list[str] = []
    for reply in (yield lambda _: pipe.execute(raise_on_error=False)):
        if isinstance(reply, redis.ResponseError):  # (a user without the tenants' keys: the janitor of one that has)
            log.warning("cannot release a capped tenant's run: %s", reply)
            continue
        if isinstance(reply, Exception):
            raise reply
        started += [as_text(r) for r in reply]
    return started


release_runs = blocking(release_runs_op)


def sweep_caps(client: redis.Redis, keys: Keys) -> int:
    """Release the running runs of capped tenants that ended without their end being seen (a worker
    killed between its commit and the release) and start the queued runs that fit (a cap raised or
    lifted); return how many runs started."""
    started = 0
    for p in range(keys.partitions):
        caps: Any = client.hgetall(keys.tenant_caps(p))
        names = {as_text(t) for t in caps} | {as_text(t) for t in client.smembers(keys.tenant_set(p))}
        for tenant in sorted(names):
            running = [as_text(r) for r in client.smembers(keys.tenant_running(tenant, p))]
            if running:
                ended = [r for r, over in zip(running, runs_over(client, keys, running), strict=True) if over]
                started += len(release_runs(client, keys, ended, dict.fromkeys(ended, tenant)))
            if client.llen(keys.tenant_queue(tenant, p)):
                try:
                    started += len(_end(client, [keys.placeholder(p), keys.tenant_caps(p)], ["", keys.tag(p), tenant]))
                except redis.ResponseError as exc:  # (a role user that may not write the first role's stream)
                    log.warning("cannot start queued runs of tenant %r: %s", tenant, exc)
    return started


def tenant_run_ids_op(keys: Keys, tenant: str, limit: int) -> Op[list[str]]:
    """The newest ``limit`` run ids of ``tenant``, newest first."""
    pipe = yield lambda c: c.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.zrevrange(keys.tenant_runs(tenant, p), 0, limit - 1, withscores=True)
    rows: list[Any] = yield execute(pipe)
    scored = sorted(((score, as_text(m)) for part in rows for m, score in part), reverse=True)
    return [run_id for _, run_id in scored[:limit]]


tenant_run_ids = blocking(tenant_run_ids_op)
atenant_run_ids = awaiting(tenant_run_ids_op)


@dataclass(frozen=True, slots=True)
class TenantCounts:
    """How many of a tenant's runs (the newest ``window`` of them) are queued and running."""

    queued: int = 0
    running: int = 0
    runs: int = 0


def count_runs(client: redis.Redis, keys: Keys, tenant: str, window: int = 10_000) -> TenantCounts:
    """Queued and running among the newest ``window`` runs of ``tenant`` (one pipelined read of their statuses)."""
    ids = tenant_run_ids(client, keys, tenant, window)
    if not ids:
        return TenantCounts()
    pipe = client.pipeline(transaction=False)
    for run_id in ids:
        pipe.hget(keys.run(run_id), "status")
    statuses = [as_text(s) for s in pipe.execute() if s is not None]
    return TenantCounts(queued=statuses.count(RunStatus.QUEUED.value),
                        running=statuses.count(RunStatus.RUNNING.value), runs=len(statuses))
