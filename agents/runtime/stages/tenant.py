"""The tenant stages around the model call: a tenant's token quota and its RPM/TPM limits.

``TenantQuota`` (before the call) takes out of ``batch.work`` the tasks of a tenant whose token
quota for the current window is used up (to ``rejected``: they dead-letter and their run fails with
the one-line reason, never silently), then, for a template role, waits for each tenant's per-minute
limits (``rpm`` prompts, ``tpm`` tokens reserved at ``max_new_tokens`` per prompt) on the shared
GCRA limiter (``broker/ratelimit.py``, one state per tenant, ``tenant:<name>``), as a model's own
limits are waited for. ``TenantUsage`` (after the call) adds each tenant's generated tokens to its
quota window (``broker.tenants.add_tokens``) and gives back what the reservations did not use.

The tenant is the task's, which the guard stage checked against the run record. A task of no
tenant, or of a tenant with no published limits, passes untouched; its tokens are still counted
(``baton tenants`` shows them).
"""

from __future__ import annotations

from collections import Counter

from ....broker.tenants import add_tokens, all_limits, quota_state
from ..ratelimits import ModelLimiter, Reservation
from ..role import RoleRuntime
from ..work import Batch

__all__ = ["TenantQuota", "TenantUsage"]


class TenantQuota:
    """Refuse over-quota tenants' tasks; wait for the tenants' per-minute limits (template roles)."""

    def __init__(self, rt: RoleRuntime, *, rate_limits: bool = True) -> None:
        self.rt = rt
        self.rate_limits = rate_limits
        self._limiters: dict[tuple[str, int, int], ModelLimiter] = {}

    def __call__(self, batch: Batch) -> None:
        tenants = Counter(w.task.tenant for w in batch.work if w.task.tenant)
        if not tenants:
            return
        rt = self.rt
        limits = rt.ride_out_redis(lambda: all_limits(rt.client, rt.keys), "reading tenant limits")
        over: dict[str, str] = {}
        for tenant in tenants:
            lim = limits.get(tenant)
            if lim is not None and lim.quota_tokens:
                state = rt.ride_out_redis(lambda t=tenant, q=lim: quota_state(rt.client, rt.keys, t, q),
                                          "reading a quota")
                if state.over:
                    over[tenant] = state.reason(tenant)
        if over:
            batch.rejected += [(w, over[w.task.tenant]) for w in batch.work if w.task.tenant in over]
            batch.work = [w for w in batch.work if w.task.tenant not in over]
        if not self.rate_limits:
            return
        for tenant, n in tenants.items():
            lim = limits.get(tenant)
            if tenant in over or lim is None or not (lim.rpm or lim.tpm):
                continue
            limiter = self._limiter(tenant, lim.rpm, lim.tpm)
            batch.tenant_holds.append((limiter, tenant, limiter.acquire(n, rt.max_new_tokens)))

    def _limiter(self, tenant: str, rpm: int, tpm: int) -> ModelLimiter:
        key = (tenant, rpm, tpm)
        if key not in self._limiters:
            rt = self.rt
            self._limiters[key] = ModelLimiter(rt.client, rt.keys, f"tenant:{tenant}", rpm=rpm, tpm=tpm,
                                               stopping=rt.stopping, metrics=rt.metrics, settings=rt.settings)
        return self._limiters[key]


class TenantUsage:
    """Count each tenant's generated tokens in its quota window; settle its rate-limit reservations."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        used: Counter[str] = Counter()
        for item, gen in batch.done:
            if item.task.tenant:
                used[item.task.tenant] += gen.new_tokens
        holds, batch.tenant_holds = batch.tenant_holds, []
        for limiter, tenant, reservation in holds:
            assert isinstance(limiter, ModelLimiter) and isinstance(reservation, Reservation)
            limiter.settle(reservation, used[tenant])
        if used:
            rt = self.rt
            rt.ride_out_redis(lambda: add_tokens(rt.client, rt.keys, used), "counting tenant tokens")
