"""``/v1/schedules``: create, list, show, pause, resume and delete cron schedules of runs."""

from __future__ import annotations

from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, HTTPException

from ...broker.schedules import delete_schedule, get_schedule, list_schedules, schedule_state
from ...protocol import ProtocolError
from ...protocol.schedules import Overlap, Schedule
from ..schedules import add_schedule, set_paused
from .api import ApiContext, v1_router
from .bodies import json_body, openapi_body
from .tenancy import caller, owns

__all__ = ["ScheduleRequest", "schedules_router"]


class ScheduleRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Create or replace a schedule: ``cron`` in UTC (5 fields, or 6 with seconds last)."""

    name: Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")]
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    task: Annotated[str, msgspec.Meta(min_length=1, max_length=65536)]
    workflow: str = ""
    overlap: Overlap = "skip"
    catchup_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0


def _view(ctx: ApiContext, s: Schedule) -> dict[str, Any]:
    return {**msgspec.to_builtins(s), "state": msgspec.to_builtins(schedule_state(ctx.client, ctx.keys, s.name))}


def schedules_router(ctx: ApiContext) -> APIRouter:
    """The ``/v1/schedules`` routes."""
    router = v1_router(ctx, tags=["schedules"])

    def found(name: str) -> Schedule:
        if (s := get_schedule(ctx.client, ctx.keys, name)) is None or not owns(s.tenant):
            raise HTTPException(404, f"no schedule {name!r}")
        return s

    @router.post("/schedules", status_code=201, openapi_extra=openapi_body(ScheduleRequest),
                 summary="Create or replace a schedule")
    def create(body: Annotated[ScheduleRequest, Depends(json_body(ScheduleRequest))]) -> dict[str, Any]:
        held = get_schedule(ctx.client, ctx.keys, body.name)
        if held is not None and not owns(held.tenant):  # schedule names are one namespace
            raise HTTPException(409, f"the schedule name {body.name!r} is taken; choose another")
        try:
            s = add_schedule(ctx.client, ctx.keys, body.name, body.cron, task=body.task, workflow=body.workflow,
                             overlap=body.overlap, catchup_s=body.catchup_s,
                             tenant=held.tenant if held is not None else caller().tenant)
        except ProtocolError as exc:
            raise HTTPException(422, str(exc)) from None
        return _view(ctx, s)

    @router.get("/schedules", summary="Every schedule, by name")
    def list_route() -> dict[str, Any]:
        return {"schedules": [_view(ctx, s) for s in list_schedules(ctx.client, ctx.keys) if owns(s.tenant)]}

    @router.get("/schedules/{name}", summary="One schedule and its state")
    def show(name: str) -> dict[str, Any]:
        return _view(ctx, found(name))

    @router.post("/schedules/{name}/pause", summary="Stop firing a schedule")
    def pause(name: str) -> dict[str, Any]:
        found(name)
        return _view(ctx, set_paused(ctx.client, ctx.keys, name, True) or found(name))

    @router.post("/schedules/{name}/resume", summary="Fire a schedule again from its next tick")
    def resume(name: str) -> dict[str, Any]:
        found(name)
        return _view(ctx, set_paused(ctx.client, ctx.keys, name, False) or found(name))

    @router.delete("/schedules/{name}", summary="Delete a schedule (its runs stay)")
    def delete(name: str) -> dict[str, Any]:
        found(name)
        if not delete_schedule(ctx.client, ctx.keys, name):
            raise HTTPException(404, f"no schedule {name!r}")
        return {"name": name, "deleted": True}

    return router
