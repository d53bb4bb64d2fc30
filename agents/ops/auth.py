"""Bearer-token authentication of the dashboard's and the HTTP API's routes.

The tokens come from ``BATON_API_TOKENS`` (comma-separated). With none set every route is open
(``baton dashboard`` then refuses to listen beyond the loopback address). With tokens set, a
request needs ``Authorization: Bearer <token>``; a GET of an event-stream route
(``EVENT_STREAM_ROUTES``: ``/api/events`` and ``/v1/runs/{id}/events``, which ``EventSource``
opens without a way to set headers) may pass it as ``?access_token=`` instead; no other route
takes it from the query (where it would land in logs and histories for nothing). Each candidate
is compared with every token in constant time.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Sequence

from fastapi import HTTPException, Request

__all__ = ["ACCESS_TOKEN_PARAM", "EVENT_STREAM_ROUTES", "BearerAuth", "bearer_token"]

ACCESS_TOKEN_PARAM = "access_token"
"""The query parameter that carries the token on the event-stream routes' GETs."""

EVENT_STREAM_ROUTES = re.compile(r"^/(api/events|v1/runs/[^/]+/events)$")
"""The paths whose GET may carry the token as ``?access_token=``."""


class BearerAuth:
    """A FastAPI dependency that lets a request through only with one of ``tokens``."""

    def __init__(self, tokens: Sequence[str]) -> None:
        self._tokens = tuple(t.encode() for t in tokens if t)

    @property
    def enabled(self) -> bool:
        """Whether any token is configured (otherwise every request passes)."""
        return bool(self._tokens)

    def allows(self, candidate: str | None) -> bool:
        """Whether ``candidate`` is one of the tokens (constant time per token; every token compared)."""
        if not self._tokens:
            return True
        if not candidate:
            return False
        given = candidate.encode()
        matches = [hmac.compare_digest(given, token) for token in self._tokens]
        return any(matches)

    def __call__(self, request: Request) -> None:
        """Raise 401 (with ``WWW-Authenticate: Bearer``) unless the request carries a token."""
        if not self._tokens:
            return
        candidate = bearer_token(request.headers.get("authorization", ""))
        if candidate is None and _is_event_stream(request):
            candidate = request.query_params.get(ACCESS_TOKEN_PARAM)
        if candidate is None:
            raise _unauthorized("a bearer token is required (Authorization: Bearer <token>)")
        if not self.allows(candidate):
            raise _unauthorized("the bearer token is not valid")


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (``None``: not one)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def _is_event_stream(request: Request) -> bool:
    return request.method == "GET" and EVENT_STREAM_ROUTES.match(request.url.path) is not None


def _unauthorized(reason: str) -> HTTPException:
    return HTTPException(401, reason, headers={"WWW-Authenticate": "Bearer"})
