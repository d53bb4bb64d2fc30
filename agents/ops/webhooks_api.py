"""``/v1/webhooks``: completion webhook deliveries: the failed ones, one run's, and re-sending."""

from __future__ import annotations

from typing import Any

import msgspec
from fastapi import APIRouter, HTTPException

from ...broker.runs import run_records
from ...broker.webhooks import failed, get_delivery
from ..webhooks import resend
from .api import ApiContext, record_or_404, v1_router
from .tenancy import owns

__all__ = ["webhooks_router"]


def webhooks_router(ctx: ApiContext) -> APIRouter:
    """The ``/v1/webhooks`` routes."""
    router = v1_router(ctx, tags=["webhooks"])

    @router.get("/webhooks/failed", summary="Failed deliveries, newest first")
    def failed_route(limit: int = 100) -> dict[str, Any]:
        found = failed(ctx.client, ctx.keys, max(1, min(limit, 1000)))
        records = run_records(ctx.client, ctx.keys, [d.run_id for d in found])  # only the caller's tenant's
        mine = [d for d, rec in zip(found, records, strict=True) if owns(rec.tenant if rec is not None else "")]
        return {"deliveries": msgspec.to_builtins(mine)}

    @router.get("/webhooks/{run_id}", summary="A run's delivery")
    def show(run_id: str) -> dict[str, Any]:
        record_or_404(ctx, run_id)
        if (d := get_delivery(ctx.client, ctx.keys, run_id)) is None:
            raise HTTPException(404, f"run {run_id!r} has no webhook delivery")
        return msgspec.to_builtins(d)  # type: ignore[no-any-return]

    @router.post("/webhooks/{run_id}/resend", summary="Send a run's delivery again now")
    def resend_route(run_id: str) -> dict[str, Any]:
        record_or_404(ctx, run_id)
        if (d := resend(ctx.client, ctx.keys, run_id)) is None:
            raise HTTPException(404, f"run {run_id!r} has no webhook delivery")
        return msgspec.to_builtins(d)  # type: ignore[no-any-return]

    return router
