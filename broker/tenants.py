"""Tenants in Redis: their published limits, their token usage per quota window, their runs.

The API server (and ``baton tenants apply``) publishes each tenant's limits from the tenants file
to one hash (``Keys.tenants``); submits and workers read them (:func:`tenant_limits`, remembered
for ``LIMITS_CACHE_S`` per process). Tokens a tenant's model calls generate are added to the
current window's counter (:func:`add_tokens`; windows are fixed, ``quota_window_s`` long, counted
from the epoch, and each counter expires after its window). Each run of a tenant is indexed per
partition (``Keys.tenant_runs``, written with the run by ``broker.runs.stage_submit``) so a tenant
lists its own runs without reading anyone else's.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import msgspec
import redis

from baton.broker.backpressure import SubmitRefused
from baton.broker.keys import Keys
from baton.broker.text import as_text
from baton.protocol import RunStatus
from baton.protocol.tenants import TenantLimits

__all__ = [
    "LIMITS_CACHE_S", "QuotaExceeded", "QuotaState", "TenantCounts", "add_tokens", "all_limits",
    "check_quota", "count_runs", "publish_limits", "quota_state", "stage_tenant_run", "tenant_limits", "tenant_run_ids",
]

LIMITS_CACHE_S = 2.0
"""How long a process trusts the tenant limits it read."""

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(TenantLimits).decode
_cache: dict[tuple[int, str], tuple[float, dict[str, TenantLimits]]] = {}
_lock = threading.Lock()


def publish_limits(client: redis.Redis, keys: Keys, limits: Mapping[str, TenantLimits]) -> None:
    """Make ``limits`` the published limits of every tenant (tenants not named lose theirs)."""
    pipe = client.pipeline(transaction=True)
    pipe.delete(keys.tenants())
    if limits:
        pipe.hset(keys.tenants(), mapping={name: _encode(lim) for name, lim in limits.items()})
    pipe.execute()
    with _lock:
        _cache.clear()


def all_limits(client: redis.Redis, keys: Keys) -> dict[str, TenantLimits]:
    """Every published tenant's limits (read at most every ``LIMITS_CACHE_S`` per client and prefix)."""
    memo = (id(client), keys.prefix)
    now = time.monotonic()
    with _lock:
        hit = _cache.get(memo)
        if hit is not None and now - hit[0] < LIMITS_CACHE_S:
            return hit[1]
    raw: Any = client.hgetall(keys.tenants())
    out: dict[str, TenantLimits] = {}
    for name, value in raw.items():
        try:
            out[as_text(name)] = _decode(value)
        except (msgspec.DecodeError, msgspec.ValidationError):
            continue
    with _lock:
        _cache[memo] = (now, out)
    return out


def tenant_limits(client: redis.Redis, keys: Keys, tenant: str) -> TenantLimits | None:
    """The published limits of ``tenant`` (None: none published, so no limits)."""
    return all_limits(client, keys).get(tenant) if tenant else None


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


def quota_state(client: redis.Redis, keys: Keys, tenant: str, limits: TenantLimits,
                at: float | None = None) -> QuotaState:
    """``tenant``'s usage in the quota window holding ``at`` (now)."""
    n, left = _window(limits, time.time() if at is None else at)
    raw: Any = client.get(keys.tenant_usage(tenant, limits.quota_window_s, n))
    used = int(raw or 0)
    return QuotaState(used, limits.quota_tokens, limits.quota_window_s, left)


class QuotaExceeded(SubmitRefused):
    """A submit of a tenant whose token quota for the current window is used up."""

    def __init__(self, tenant: str, state: QuotaState) -> None:
        super().__init__(state.reason(tenant), max(1, int(state.resets_in_s) + 1))
        self.tenant = tenant
        self.state = state


def check_quota(client: redis.Redis, keys: Keys, tenant: str) -> None:
    """Refuse (``QuotaExceeded``) a new run of ``tenant`` while its token quota is used up."""
    limits = tenant_limits(client, keys, tenant)
    if limits is None or not limits.quota_tokens:
        return
    state = quota_state(client, keys, tenant, limits)
    if state.over:
        raise QuotaExceeded(tenant, state)


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
    dropping entries older than the records' lifetime."""
    key = keys.tenant_runs(tenant, partition)
    pipe.zadd(key, {run_id: created_at})
    if ttl := keys.retention.record_ttl_s:
        pipe.zremrangebyscore(key, "-inf", f"({created_at - ttl}")
        pipe.expire(key, ttl)


def tenant_run_ids(client: redis.Redis, keys: Keys, tenant: str, limit: int) -> list[str]:
    """The newest ``limit`` run ids of ``tenant``, newest first."""
    rows: list[Any] = [client.zrevrange(keys.tenant_runs(tenant, p), 0, limit - 1, withscores=True)
                       for p in range(keys.partitions)]
    scored = sorted(((score, as_text(m)) for part in rows for m, score in part), reverse=True)
    return [run_id for _, run_id in scored[:limit]]


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
