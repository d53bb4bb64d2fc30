"""Bearer-token authentication of the dashboard's and the HTTP API's routes.

The tokens come from ``BATON_API_TOKENS`` (comma-separated, admin tokens) and the tenants file
(``BATON_TENANTS_FILE``, hashed tokens of tenants: ``agents/tenants.py``). With none set every route is open
(``baton dashboard`` then refuses to listen beyond the loopback address). With tokens set, a
request needs ``Authorization: Bearer <token>``; a GET of an event-stream route
(``EVENT_STREAM_ROUTES``: ``/api/events`` and ``/v1/runs/{id}/events``, which ``EventSource``
opens without a way to set headers) may pass it as ``?access_token=`` instead; no other route
takes it from the query (where it would land in logs and histories for nothing). Each candidate
is compared with every token in constant time. The caller a token names (its tenant, or an admin)
is resolved once per request by ``agents/ops/tenancy.py``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from fastapi import HTTPException, Request

from ..tenants import Directory, Principal, bearer_token

__all__ = ["ACCESS_TOKEN_PARAM", "EVENT_STREAM_ROUTES", "BearerAuth", "bearer_token", "request_token"]

ACCESS_TOKEN_PARAM = "access_token"
"""The query parameter that carries the token on the event-stream routes' GETs."""

EVENT_STREAM_ROUTES = re.compile(r"^/(api/events|v1/runs/[^/]+/events)$")
"""The paths whose GET may carry the token as ``?access_token=``."""


class BearerAuth:
    """A FastAPI dependency that lets a request through only with one of ``tokens`` (admin tokens)
    or a token of ``directory``'s tenants."""

    def __init__(self, tokens: Sequence[str], directory: Directory | None = None) -> None:
        self.directory = Directory(directory.tenants if directory else {},
                                   (*(directory.admin_tokens if directory else ()), *(t for t in tokens if t)))

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise every request passes)."""
        return self.directory.enabled

    def principal(self, candidate: str | None) -> Principal | None:
        """Who ``candidate`` names (None: nobody); every known token hash is compared in constant time."""
        return self.directory.principal(candidate)

    def allows(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is a known token (always, with none configured)."""
        return not self.enabled or self.principal(candidate) is not None

    def __call__(self, request: Request) -> None:
        """Raise 401 (with ``WWW-Authenticate: Bearer``) unless the request carries a token."""
        if not self.enabled:
            return
        candidate = request_token(request.headers.get("authorization", ""), request.method, request.url.path,
                                  request.query_params.get(ACCESS_TOKEN_PARAM))
        if candidate is None:
            raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        if not self.allows(candidate):
            raise _unauthorized("the bearer token is not valid")


def request_token(authorization: str, method: str, path: str, query_token: str | None) -> str | None:
    """The token a request carries: its bearer header's, or on an event-stream GET its ``?access_token=``."""
    candidate = bearer_token(authorization)
    if candidate is None and method == "GET" and EVENT_STREAM_ROUTES.match(path) is not None:
        candidate = query_token
    return candidate


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})
