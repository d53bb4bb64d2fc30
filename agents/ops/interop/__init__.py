"""The ecosystem's protocols over baton runs: an OpenAI-compatible face, an A2A server and an MCP
server, each a face of the same runs (``runs.py``) on the ``/v1`` API's bearer tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from ..api import ApiContext
from ..auth import BearerAuth
from ..tenancy import admin_only

__all__ = ["MCP_PATH", "mount_protocols"]

MCP_PATH = "/mcp"
"""Where the dashboard serves MCP over Streamable HTTP."""


class Guarded:
    """An ASGI app behind the bearer tokens: a request without one gets 401 before its body is read,
    and a tenant's (not an admin's) 403."""

    def __init__(self, app: ASGIApp, auth: BearerAuth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                self.auth(Request(scope))
                admin_only()  # its tools reach runs by id: an admin's face, tenants use /v1
            except HTTPException as exc:
                await JSONResponse({"detail": exc.detail}, exc.status_code, headers=exc.headers)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def mount_protocols(app: FastAPI, ctx: ApiContext) -> None:
    """Serve the protocol faces on ``app`` (the dashboard), with ``ctx``'s bearer tokens: the
    OpenAI-compatible routes, the A2A agents and MCP over Streamable HTTP at ``/mcp``."""
    from mcp.server.streamable_http_manager import StreamableHTTPSessionManager

    from .a2a_server import a2a_router
    from .mcp_server import mcp_server
    from .openai_face import openai_router
    from .runs import Runs

    app.include_router(openai_router(ctx))
    app.include_router(a2a_router(ctx))
    # Stateless: every request stands alone (tasks and runs live in Redis), so any replica answers.
    manager = StreamableHTTPSessionManager(mcp_server(Runs(ctx)), stateless=True)
    app.add_route(MCP_PATH, Guarded(manager.asgi_app, ctx.auth), methods=["GET", "POST", "DELETE"],
                  include_in_schema=False)
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Any) -> AsyncIterator[Any]:
        async with inner(a) as state, manager.run():
            yield state

    app.router.lifespan_context = lifespan
