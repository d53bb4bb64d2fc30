"""The HTTP API for applications: ``/v1`` routes to start, list, watch and cancel runs.

``create_app`` (``agents/ops/dashboard.py``) mounts :func:`runs_router`; more ``/v1`` routes
(reviews, fork) join with their own router made by :func:`v1_router`, which carries the bearer
token check (``agents/ops/auth.py``). Bodies are msgspec Structs (``agents/ops/bodies.py``).

``GET /v1/runs/{id}/events`` streams the run's event log as server-sent events: each event's
``id:`` is its entry id in the log, ``event:`` its type and ``data:`` its JSON. A client resumes
with the ``Last-Event-ID`` header (browsers send it when they reconnect) or ``?after=``; the
stream ends after the run's terminal event (``done``, ``failed`` or ``cancelled``).
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

import msgspec
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from ...broker import (
    Keys,
    Redis,
    cancel_run,
    connect_async,
    list_runs,
    run_scratchpads,
)
from ...broker.backpressure import RedisFull, SubmitRefused
from ...broker.errors import describe, is_transient
from ...broker.events import AsyncRedis, aread_events
from ...broker.records import RunRecord
from ...broker.replication import ReplicasBehind
from ...broker.runs import run_record, run_records
from ...broker.tenants import tenant_run_ids
from ...broker.threads import ThreadBusy
from ...protocol import TERMINAL_STATUSES, ProtocolError, RunStatus, is_terminal
from ..runtime.tracing import fields_from_headers
from ..settings import Settings
from ..submit import submit_run
from ..webhooks import WebhookRefused
from ..workflow.loader import named
from ..workflow.spec import Workflow, WorkflowError
from .auth import BearerAuth
from .bodies import SubmitRequest, json_body, openapi_body
from .slots import Slot, StreamSlots
from .tenancy import caller, owns

__all__ = ["ApiContext", "record_or_404", "redis_error", "run_view", "runs_router", "submit_request", "v1_router"]

log = logging.getLogger("baton.api")

FILTER_WINDOW = 2000
"""How many of the newest runs ``GET /v1/runs?status=`` looks through."""

SSE_BLOCK_MS = 10_000
"""How long one blocking read of a run's events waits before a keep-alive comment."""

EVENT_ID = re.compile(r"^\d{1,20}(-\d{1,20})?$")
MAX_ID_PART = 2**64 - 1
"""A stream id is two unsigned 64-bit numbers, ``ms-seq``."""


def is_event_id(cursor: str) -> bool:
    """Whether ``cursor`` is a stream id Redis accepts (``ms`` or ``ms-seq``, each part at most 2**64 - 1)."""
    return EVENT_ID.match(cursor) is not None and all(int(p) <= MAX_ID_PART for p in cursor.split("-"))

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}

SUBMIT_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"description": "The webhook URL is malformed or not allowed by BATON_WEBHOOK_ALLOW"},
    413: {"description": "Body too large"},
    429: {"description": "The entry role's backlog is at its limit (BATON_MAX_BACKLOG), or the tenant's token "
                        "quota is used up; see Retry-After"},
    503: {"description": "Redis is out of memory and refuses new runs, or is unavailable for longer than "
                        "BATON_SUBMIT_RETRY_S (a failover), or the run is not yet on BATON_WAIT_REPLICAS replicas; "
                        "see Retry-After"},
    409: {"description": "The thread runs a turn and the thread policy is reject"},
}


@dataclass
class ApiContext:
    """What the API's routes share: settings, Redis clients, key names, workflows and the token check."""

    settings: Settings
    client: Redis
    keys: Keys
    workflow: Workflow
    auth: BearerAuth
    streams: StreamSlots = field(default_factory=StreamSlots)
    _aclient: AsyncRedis | None = field(default=None, repr=False)
    _workflows: dict[str, Workflow] = field(default_factory=dict, repr=False)

    @property
    def aclient(self) -> AsyncRedis:
        """The asyncio client for blocking reads (made on first use)."""
        if self._aclient is None:
            self._aclient = connect_async(self.settings.redis_url)
        return self._aclient

    async def aclose(self) -> None:
        """Close the asyncio client, if one was made."""
        if self._aclient is not None:
            await self._aclient.aclose()
            self._aclient = None

    def resolve_workflow(self, name: str | None) -> Workflow:
        """The served workflow, the seed chain or a shipped workflow by name, or one an app's workers
        registered (read on each submit: a redeployed app may change it; never a file: the name came
        over the network); 422 when there is none of that name."""
        if not name or name == self.workflow.name:
            return self.workflow
        if name not in self._workflows:
            try:
                wf = named(name, files=False, client=self.client, keys=self.keys)
            except WorkflowError as exc:
                raise HTTPException(422, f"{exc}; this server runs {self.workflow.name!r}") from None
            if not any(r.handler for r in wf.roles):
                self._workflows[name] = wf
            return wf
        return self._workflows[name]


def v1_router(ctx: ApiContext, **kwargs: Any) -> APIRouter:
    """An empty ``/v1`` router whose routes all require a bearer token (when tokens are set)."""
    responses: dict[int | str, dict[str, Any]] = {401: {"description": "Missing or wrong bearer token"}}
    return APIRouter(prefix="/v1", dependencies=[Depends(ctx.auth)], responses=responses, **kwargs)


def submit_request(ctx: ApiContext, body: SubmitRequest, *, trace: Mapping[str, str] | None = None,
                   idempotency_key: str | None = None) -> str:
    """Start the run ``body`` asks for, as the caller's tenant; return its id (422 when the workflow or
    task is refused; 429 while the entry role is at its backlog limit or the tenant's token quota is
    used up, 503 while Redis is full, all with ``Retry-After``).
    ``trace``: the W3C trace fields the run's hops continue (``tracing.fields_from_headers``);
    ``idempotency_key``: the ``Idempotency-Key`` header (a repeat gets the first run's id)."""
    wf = ctx.resolve_workflow(body.workflow)
    try:
        return submit_run(ctx.client, ctx.keys, ctx.settings, wf, body.task.strip(), deadline=body.deadline,
                          metadata=body.metadata, budget=body.budget(), priority=body.priority, trace=trace,
                          idempotency_key=idempotency_key, webhook=body.webhook, tenant=caller().tenant,
                          thread=body.thread, thread_policy=body.thread_policy)
    except WebhookRefused as exc:
        raise HTTPException(400, str(exc)) from None
    except ProtocolError as exc:
        raise HTTPException(422, str(exc)) from None
    except ThreadBusy as exc:
        raise HTTPException(409, str(exc)) from None
    except RedisFull as exc:
        raise HTTPException(503, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except SubmitRefused as exc:  # the backlog limit or the tenant's quota
        raise HTTPException(429, str(exc), headers={"Retry-After": str(exc.retry_after_s)}) from None
    except ReplicasBehind as exc:  # written, not yet on BATON_WAIT_REPLICAS replicas
        raise HTTPException(503, str(exc), headers={"Retry-After": "1"}) from None


def redis_error(_: Request, exc: Exception) -> JSONResponse:
    """A Redis error a route could not ride out, as an answer with its reason: 503 with ``Retry-After``
    while Redis is out (a failover that outlasted ``BATON_SUBMIT_RETRY_S``, a restart), else 500."""
    if is_transient(exc):
        log.warning("Redis unavailable: %s", describe(exc))
        return JSONResponse({"detail": f"Redis is unavailable ({describe(exc)}); retry"}, status_code=503,
                            headers={"Retry-After": "1"})
    log.error("Redis error: %s", exc)
    return JSONResponse({"detail": f"Redis error: {exc}"}, status_code=500)


def run_view(record: RunRecord) -> dict[str, Any]:
    """A run record as the API shows it: its stored fields, with ``metadata`` decoded to an object,
    and ``usage``: its tokens and calls in total, by role and by model, and its budget."""
    return {"run_id": record.run_id, **record.fields, "metadata": record.metadata, "usage": record.usage.as_dict()}


def runs_router(ctx: ApiContext) -> APIRouter:
    """``/v1/runs``: submit, list, show, watch (server-sent events) and cancel runs."""
    router = v1_router(ctx, tags=["runs"])

    @router.post("/runs", status_code=201, openapi_extra=openapi_body(SubmitRequest),
                 summary="Start a run", responses=SUBMIT_RESPONSES)
    def create_run(body: Annotated[SubmitRequest, Depends(json_body(SubmitRequest))],
                   request: Request) -> dict[str, str]:
        run_id = submit_request(ctx, body, trace=fields_from_headers(request.headers),
                                idempotency_key=request.headers.get("idempotency-key"))
        log.info("run %s submitted over the API", run_id)
        return {"run_id": run_id}

    @router.get("/runs", summary="List runs, newest first")
    def list_runs_route(status: RunStatus | None = None,
                        limit: Annotated[int, Query(ge=1, le=500)] = 20) -> dict[str, Any]:
        window = FILTER_WINDOW if status else limit
        who = caller()
        ids = list_runs(ctx.client, ctx.keys, window) if who.admin else tenant_run_ids(
            ctx.client, ctx.keys, who.tenant, window)
        records = [rec for rec in run_records(ctx.client, ctx.keys, ids) if rec is not None and owns(rec.tenant, who)]
        return {"runs": [run_view(rec) for rec in records if status is None or rec.status is status][:limit]}

    @router.get("/runs/{run_id}", summary="One run: record, result and tokens")
    def get_run_route(run_id: str) -> dict[str, Any]:
        rec = record_or_404(ctx, run_id)
        hops = [entry for pad in run_scratchpads(ctx.client, ctx.keys, run_id).values() for entry in pad]
        tokens = sum(e.meta.tokens for e in hops)
        return {"run_id": run_id, "status": rec.status, "result": rec.result or None, "error": rec.error or None,
                "tokens": tokens, "hops": len(hops), "record": run_view(rec)}

    @router.post("/runs/{run_id}/cancel", summary="Cancel a run")
    def cancel_route(run_id: str) -> dict[str, Any]:
        record_or_404(ctx, run_id)
        before = cancel_run(ctx.client, ctx.keys, run_id)
        if before is None:
            raise HTTPException(404, _missing(run_id))
        ended = before in TERMINAL_STATUSES
        return {"run_id": run_id, "cancelled": not ended, "status": before if ended else RunStatus.CANCELLED.value}

    @router.get("/runs/{run_id}/events", summary="The run's events (server-sent events)",
                response_class=StreamingResponse,
                responses={200: {"content": {"text/event-stream": {}}, "description": "id, event and data per event"}})
    async def events_route(request: Request, run_id: str, after: str | None = None,
                           last_event_id: Annotated[str | None, Header()] = None) -> StreamingResponse:
        cursor = last_event_id or after
        if cursor is not None and not is_event_id(cursor):
            raise HTTPException(422, f"bad event id {cursor!r} (expected a stream id such as 1700000000000-0)")
        await asyncio.to_thread(record_or_404, ctx, run_id)
        slot = ctx.streams.acquire(request)
        return StreamingResponse(_event_stream(ctx, request, run_id, cursor, slot), media_type="text/event-stream",
                                 headers=SSE_HEADERS, background=BackgroundTask(slot.release))

    return router


async def _event_stream(ctx: ApiContext, request: Request, run_id: str, cursor: str | None,
                        slot: Slot) -> AsyncIterator[str]:
    """Server-sent events of ``run_id`` after ``cursor``, until its terminal event (then ``slot`` is free)."""
    try:
        async for chunk in _events_after(ctx, request, run_id, cursor):
            yield chunk
    finally:
        slot.release()


async def _events_after(ctx: ApiContext, request: Request, run_id: str, cursor: str | None) -> AsyncIterator[str]:
    while not await request.is_disconnected():
        batch = await aread_events(ctx.aclient, ctx.keys, run_id, after=cursor, block_ms=SSE_BLOCK_MS)
        ended = not batch and await asyncio.to_thread(_has_ended, ctx, run_id)
        if ended:  # the terminal event is before the cursor, gone with the log's retention, or just written
            batch = await aread_events(ctx.aclient, ctx.keys, run_id, after=cursor)
        for event_id, event in batch:
            cursor = event_id
            kind = str(type(event).__struct_config__.tag)
            yield f"id: {event_id}\nevent: {kind}\ndata: {msgspec.json.encode(event).decode()}\n\n"
            if is_terminal(event):
                return
        if ended:
            return
        if not batch:
            yield ": keep-alive\n\n"


def _has_ended(ctx: ApiContext, run_id: str) -> bool:
    """Whether the run has ended or its record expired."""
    rec = run_record(ctx.client, ctx.keys, run_id)
    return rec is None or rec.ended


def record_or_404(ctx: ApiContext, run_id: str) -> RunRecord:
    """The run's record; 404 with a reason when there is no such run, or it is another tenant's
    (answered alike, so ids do not leak)."""
    rec = run_record(ctx.client, ctx.keys, run_id)
    if rec is None or not owns(rec.tenant):
        raise HTTPException(404, _missing(run_id))
    return rec


def _missing(run_id: str) -> str:
    return f"no run {run_id!r} (it never existed or its record expired)"
