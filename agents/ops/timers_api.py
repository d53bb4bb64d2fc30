"""``POST /v1/runs/{id}/signal`` and ``GET /v1/waits``: outside events for code roles' ``ctx.wait_for``,
and the parked runs (what each waits for, until when).

The bearer token is checked before the body is read (``v1_router``); another tenant's run is a 404
like an unknown one; a run that has ended is a 409. A signal no wait has asked for yet is kept
(``broker/timers.py``) and the response says ``"delivered": false``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException, Query

from ...broker.runs import run_records
from ...broker.timers import SignalRefused, list_waits, send_signal
from ...protocol.fields import Name
from .api import ApiContext, record_or_404, v1_router
from .bodies import json_body, openapi_body
from .tenancy import owns

__all__ = ["SignalRequest", "timers_router"]


class SignalRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A signal for a run: its ``name`` (what ``ctx.wait_for(name)`` waits for) and any JSON ``data``."""

    name: Name
    data: Any = None


def timers_router(ctx: ApiContext) -> APIRouter:
    """The signal route and the list of parked runs."""
    router = v1_router(ctx, tags=["timers"])

    @router.post("/runs/{run_id}/signal", status_code=202, openapi_extra=openapi_body(SignalRequest),
                 summary="Send a signal to a run (ctx.wait_for)",
                 responses={404: {"description": "No such run"}, 409: {"description": "The run has ended"}})
    def signal_route(run_id: str, body: Annotated[SignalRequest, Depends(json_body(SignalRequest))]) -> dict[str, Any]:
        record_or_404(ctx, run_id)
        try:
            delivered = send_signal(ctx.client, ctx.keys, run_id, body.name, body.data)
        except SignalRefused as exc:
            raise HTTPException(exc.status, exc.reason) from None
        return {"run_id": run_id, "name": body.name, "delivered": delivered}

    @router.get("/waits", summary="Parked runs: what each sleeps or waits for, until when")
    def waits_route(limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> dict[str, Any]:
        waits = list_waits(ctx.client, ctx.keys, limit=limit)
        records = run_records(ctx.client, ctx.keys, [w.run_id for w in waits])
        mine = [w for w, rec in zip(waits, records, strict=True) if rec is not None and owns(rec.tenant)]
        return {"waits": [asdict(w) for w in mine]}

    return router
