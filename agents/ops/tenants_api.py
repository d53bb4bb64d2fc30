"""``/v1/tenants`` and ``/v1/audit``: each tenant's queued and running runs, tokens used and limits,
and the audit log of state-changing calls. An admin sees every tenant; a tenant sees itself."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Query

from ...broker import Keys, Redis
from ...broker.audit import read_audit
from ...broker.tenants import all_limits, count_runs, quota_state
from ...protocol.tenants import TenantLimits
from .api import ApiContext, v1_router
from .tenancy import caller

__all__ = ["tenant_views", "tenants_router"]


def tenant_views(client: Redis, keys: Keys, names: list[str] | None = None) -> list[dict[str, Any]]:
    """Each published tenant (or those in ``names``): queued and running runs, tokens used in its
    quota window, and its limits."""
    limits = all_limits(client, keys)
    out = []
    for name in sorted(limits if names is None else names):
        lim = limits.get(name) or TenantLimits()
        counts = count_runs(client, keys, name)
        q = quota_state(client, keys, name, lim)
        out.append({"tenant": name, "queued": counts.queued, "running": counts.running, "tokens_used": q.used,
                    "window_s": q.window_s, "resets_in_s": round(q.resets_in_s), "over_quota": q.over,
                    "limits": msgspec.to_builtins(lim)})
    return out


def tenants_router(ctx: ApiContext) -> APIRouter:
    """The ``/v1/tenants`` and ``/v1/audit`` routes."""
    router = v1_router(ctx, tags=["tenants"])

    @router.get("/tenants", summary="Tenants: queued, running, tokens used and limits")
    def list_route() -> dict[str, Any]:
        who = caller()
        names = None if who.admin else [who.tenant]
        return {"tenants": tenant_views(ctx.client, ctx.keys, names)}

    @router.get("/audit", summary="The audit log of state-changing calls, newest first")
    def audit_route(limit: Annotated[int, Query(ge=1, le=1000)] = 50) -> dict[str, Any]:
        who = caller()
        entries = read_audit(ctx.client, ctx.keys, limit=limit, tenant=None if who.admin else who.tenant)
        return {"entries": [asdict(e) for e in entries]}

    return router
