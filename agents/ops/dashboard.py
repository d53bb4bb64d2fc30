"""The web dashboard: a FastAPI app with server-sent events and one static HTML page.

A sampler thread takes a monitor ``Snapshot`` every ``interval`` seconds and keeps the last
``history_s`` seconds of per-role throughput. ``/api/events`` streams each new snapshot as a
server-sent event; the page (``static/dashboard.html``: vanilla JS and inline SVG, no build step)
draws the stream table, the throughput chart, the runs, a run's trace as a sequence diagram of
agents and messages, its scratchpads and the dead letters; it lists and submits runs through the
HTTP API (``GET``/``POST /v1/runs``). ``/metrics`` exports per-role lag and pending for autoscalers.

The same app serves the HTTP API for applications (``/v1``, ``agents/ops/api.py``). With
``BATON_API_TOKENS`` set, every ``/api`` and ``/v1`` route needs a bearer token
(``agents/ops/auth.py``); ``/``, ``/healthz`` and ``/metrics`` stay open, and the page asks for
the token once and sends it with its calls.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from importlib import resources
from typing import Any

import msgspec
from fastapi import APIRouter, Depends, FastAPI, HTTPException, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from starlette.background import BackgroundTask

from ...broker import BrokerError, Redis, connect, ping, run_record, run_scratchpads
from ...broker.dlq import count_dead, list_dead
from ...broker.tenants import publish_limits
from ...protocol import DEFAULT_WORKFLOW
from ..settings import Settings
from ..tenants import Directory
from ..workflow.spec import Workflow
from .api import SSE_HEADERS, ApiContext, redis_error, runs_router
from .auth import BearerAuth
from .collectors import SnapshotCollector
from .guard import BrowserGuard, content_security_policy
from .interop import mount_protocols
from .monitor import Monitor, Snapshot, dead_letter_views
from .review_api import review_router
from .schedules_api import schedules_router
from .tenancy import CallerMiddleware, admin_only, owns
from .tenants_api import tenants_router
from .threads_api import threads_router
from .timers_api import timers_router
from .trace import RunNotFound, build_trace
from .webhooks_api import webhooks_router

__all__ = ["Sampler", "create_app"]

log = logging.getLogger("baton.dashboard")


class Sampler:
    """Samples the monitor in a background thread; keeps the newest snapshot and a history."""

    def __init__(self, monitor: Monitor, *, interval: float = 1.0, history_s: float = 600.0) -> None:
        self.monitor = monitor
        self.interval = interval
        self.history: deque[dict[str, Any]] = deque(maxlen=max(2, int(history_s / interval)))
        self.latest: Snapshot | None = None
        self.seq = 0
        self.error = ""
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="dashboard-sampler", daemon=True)

    def start(self) -> None:
        """Start sampling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop sampling and wait for the thread."""
        self._stop.set()
        self._thread.join(timeout=5)

    def sample_once(self) -> Snapshot:
        """Take one sample now and record it."""
        snap = self.monitor.sample()
        self.history.append({"at": snap.at, "roles": {_label(f.workflow, f.role): f.throughput for f in snap.roles}})
        self.latest = snap
        self.seq += 1
        self.error = ""
        return snap

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self.sample_once()
            except BrokerError as exc:
                self.error = f"Redis: {exc}"
                log.warning("sampling failed: %s", exc)
            self._stop.wait(self.interval)


def _label(workflow: str, role: str) -> str:
    """How the throughput chart names a role: ``role``, or ``workflow/role`` beyond the seed workflow."""
    return role if workflow == DEFAULT_WORKFLOW else f"{workflow}/{role}"


API_VERSION = "1"
"""The version of the ``/v1`` API, shown in its OpenAPI document."""


def _page() -> str:
    return resources.files("baton.agents.ops").joinpath("static/dashboard.html").read_text(encoding="utf-8")


def create_app(settings: Settings, workflow: Workflow, *, interval: float = 1.0, history_s: float = 600.0,
               client: Redis | None = None) -> FastAPI:
    """The dashboard app for the deployment described by ``settings``: the page, ``/healthz`` and
    ``/metrics``, the dashboard's ``/api`` routes, the ``/v1`` API and the protocol faces."""
    client = client or connect(settings.redis_url)
    keys = settings.keys()
    sampler = Sampler(Monitor(client, keys, [(workflow.name, r.role) for r in workflow.roles]), interval=interval,
                      history_s=history_s)
    directory = Directory.of(settings.tenants_file, settings.api_token_list())
    if settings.tenants_file:
        publish_limits(client, keys, directory.limits())
    ctx = ApiContext(settings, client, keys, workflow, BearerAuth((), directory))

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        sampler.start()
        yield
        sampler.stop()
        await ctx.aclose()

    app = FastAPI(title="baton", summary="The dashboard and HTTP API of a baton deployment.", version=API_VERSION,
                  lifespan=lifespan, docs_url=None, redoc_url=None)
    app.state.sampler = sampler
    app.state.api = ctx
    app.add_exception_handler(BrokerError, redis_error)  # past a submit's retries: 503 with Retry-After
    page = _page()
    app.add_middleware(BrowserGuard, auth=ctx.auth, allowed_hosts=settings.allowed_host_list(),
                       csp=content_security_policy(page))
    app.add_middleware(CallerMiddleware, auth=ctx.auth, client=client, keys=keys)
    app.include_router(_site_router(ctx, sampler, page))
    app.include_router(_dashboard_router(ctx, sampler))
    app.include_router(runs_router(ctx))
    app.include_router(review_router(ctx))
    app.include_router(schedules_router(ctx))
    app.include_router(webhooks_router(ctx))
    app.include_router(timers_router(ctx))
    app.include_router(tenants_router(ctx))
    app.include_router(threads_router(ctx))
    mount_protocols(app, ctx)
    return app


def _site_router(ctx: ApiContext, sampler: Sampler, page: str) -> APIRouter:
    """The open routes: the page, ``/healthz`` and ``/metrics`` (per-role lag and pending)."""
    router = APIRouter()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(lambda: sampler.latest))

    @router.get("/", response_class=HTMLResponse)
    def index() -> str:
        return page

    @router.get("/healthz")
    def healthz() -> dict[str, Any]:
        ping(ctx.client, ctx.settings.redis_url)
        return {"ok": True, "sampled": sampler.seq}

    @router.get("/metrics")
    def metrics() -> Response:
        if sampler.latest is None:
            sampler.sample_once()
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return router


def _dashboard_router(ctx: ApiContext, sampler: Sampler) -> APIRouter:
    """``/api``: what only the page needs (snapshots live, a run's trace and scratchpads, dead letters).
    A tenant's token reads its own runs' traces; the snapshots and dead letters (every tenant's) are
    an admin's (403 for a tenant)."""
    client, keys = ctx.client, ctx.keys
    api = APIRouter(prefix="/api", dependencies=[Depends(ctx.auth)], tags=["dashboard"])

    @api.get("/snapshot", dependencies=[Depends(admin_only)])
    def api_snapshot() -> dict[str, Any]:
        snap = sampler.latest or sampler.sample_once()
        return {"snapshot": snap.to_builtins(), "error": sampler.error, "history": list(sampler.history)}

    @api.get("/events", dependencies=[Depends(admin_only)])
    async def api_events(request: Request) -> StreamingResponse:
        slot = ctx.streams.acquire(request)

        async def events() -> AsyncIterator[str]:
            try:
                async for chunk in _snapshots(request, sampler, await asyncio.to_thread(api_snapshot)):
                    yield chunk
            finally:
                slot.release()

        return StreamingResponse(events(), media_type="text/event-stream", background=BackgroundTask(slot.release),
                                 headers=SSE_HEADERS)

    @api.get("/runs/{run_id}")
    def api_run(run_id: str) -> dict[str, Any]:
        rec = run_record(client, keys, run_id)
        if not owns(rec.tenant if rec is not None else ""):  # another tenant's, or expired: only an admin's
            raise HTTPException(404, f"no run {run_id!r}")
        try:
            tr = build_trace(client, keys, run_id)
        except RunNotFound as exc:
            raise HTTPException(404, str(exc)) from None
        return {"trace": tr.to_builtins(), "scratchpads": msgspec.to_builtins(run_scratchpads(client, keys, run_id))}

    @api.get("/dead", dependencies=[Depends(admin_only)])
    def api_dead(limit: int = 50) -> dict[str, Any]:
        entries = list_dead(client, keys, limit=max(1, min(limit, 1000)), newest_first=True)
        return {"total": count_dead(client, keys), "entries": msgspec.to_builtins(dead_letter_views(entries))}

    return api


async def _snapshots(request: Request, sampler: Sampler, first: dict[str, Any]) -> AsyncIterator[str]:
    """Server-sent events: ``hello`` with ``first``, then each new snapshot, until the client leaves."""
    yield f"event: hello\ndata: {json.dumps(first)}\n\n"
    seen, ticks = sampler.seq, 0
    while not await request.is_disconnected():
        ticks += 1
        if sampler.seq != seen and sampler.latest is not None:
            seen = sampler.seq
            doc = {"snapshot": sampler.latest.to_builtins(), "error": sampler.error,
                   "point": sampler.history[-1] if sampler.history else None}
            yield f"event: snapshot\ndata: {json.dumps(doc)}\n\n"
        elif ticks % 60 == 0:
            yield ": keep-alive\n\n"
        await asyncio.sleep(0.25)
