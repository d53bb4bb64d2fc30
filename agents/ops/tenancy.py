"""Who calls, and what they may touch: the caller of each request, ownership checks and the audit log.

:class:`CallerMiddleware` (an ASGI middleware in front of the whole app) resolves each request's
bearer token to its :class:`~baton.agents.tenants.Principal` once, keeps it for the request
(:func:`caller`, for routes and for the submit path underneath them) and, after a state-changing
request (POST, PUT, PATCH, DELETE) has been answered, writes who did what, when and from where to
the audit stream (``broker/audit.py``), refused requests included.

A tenant sees and acts only on its own runs, reviews, schedules and event streams; anything of
another tenant answers exactly as a missing one does (404, so ids do not leak): :func:`owns`.
An admin (or any caller while authentication is off) sees everything.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs

from fastapi import HTTPException

from ...broker import Keys, Redis
from ...broker.audit import write_audit
from ..tenants import ADMIN, Principal
from .auth import ACCESS_TOKEN_PARAM, BearerAuth, request_token

__all__ = ["ANONYMOUS", "CallerMiddleware", "admin_only", "caller", "owns"]

log = logging.getLogger("baton.api")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

AUDITED_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
ANONYMOUS = Principal()
"""A caller without a valid token (the route's 401 follows)."""

_caller: contextvars.ContextVar[Principal | None] = contextvars.ContextVar("baton_caller", default=None)


def caller() -> Principal:
    """The caller of the request being handled (an admin outside a request, as before tenants)."""
    return _caller.get() or ADMIN


def owns(tenant: str, who: Principal | None = None) -> bool:
    """Whether the caller (``who``, default :func:`caller`) may see something that belongs to ``tenant``."""
    return (who or caller()).owns(tenant)


def admin_only() -> None:
    """A route dependency: 403 unless the caller is an admin (what spans every tenant)."""
    if not caller().admin:
        raise HTTPException(403, "an admin token is required (this shows every tenant's work)")


class CallerMiddleware:
    """Resolves each HTTP request's caller and audits the state-changing ones."""

    def __init__(self, app: ASGIApp, *, auth: BearerAuth, client: Redis, keys: Keys) -> None:
        self.app = app
        self.auth = auth
        self.client = client
        self.keys = keys

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        who = self._resolve(scope)
        token = _caller.set(who)
        status = 500
        audited = scope.get("method", "") in AUDITED_METHODS

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sending if audited else send)
        finally:
            _caller.reset(token)
            if audited:
                await self._audit(scope, who, status)

    def _resolve(self, scope: Scope) -> Principal:
        if not self.auth.enabled:
            return ADMIN
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        token = request_token(headers.get("authorization", ""), scope.get("method", ""), scope.get("path", ""),
                              (query.get(ACCESS_TOKEN_PARAM) or [None])[0])
        return self.auth.principal(token) or ANONYMOUS

    async def _audit(self, scope: Scope, who: Principal, status: int) -> None:
        peer = scope.get("client") or ("", 0)
        entry = {"who": who.who, "tenant": who.tenant, "token": who.token_id, "method": scope.get("method", ""),
                 "path": scope.get("path", ""), "status": status, "client": f"{peer[0]}", "at": round(time.time(), 3)}
        try:
            await asyncio.to_thread(write_audit, self.client, self.keys, entry)
        except Exception as exc:  # noqa: BLE001 - the answer is sent; an unaudited call is logged, never silent
            log.warning("audit entry not written (%s): %s", exc, entry)
