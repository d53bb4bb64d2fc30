"""API-key authentication of ``baton serve-model``'s ``/v1`` routes, answered as the OpenAI API does.

The keys come from ``BATON_MODEL_API_KEYS`` (comma-separated) and ``--api-key``. With keys set,
a ``/v1`` request needs ``Authorization: Bearer <key>``; without it, or with another key, the
answer is 401 with ``WWW-Authenticate: Bearer`` and OpenAI's error body (``type``
``invalid_request_error``, ``code`` ``invalid_api_key``), which the ``openai`` client raises as
``AuthenticationError``. Each candidate is compared with every key in constant time (the keys
are a :class:`~baton.agents.tenants.Directory` of admin tokens, as the dashboard's are). With no
keys every request passes.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import Depends, FastAPI, Request
from fastapi.params import Depends as DependsParam
from fastapi.responses import JSONResponse

from ..tenants import Directory, bearer_token

__all__ = ["ApiKeyRequired", "require_api_keys"]


class ApiKeyRequired(Exception):
    """A ``/v1`` request came without one of the server's API keys."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def _unauthorized(_: Request, exc: Exception) -> JSONResponse:
    message = exc.message if isinstance(exc, ApiKeyRequired) else str(exc)
    body = {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": "invalid_api_key"}}
    return JSONResponse(body, 401, headers={"WWW-Authenticate": "Bearer"})


def require_api_keys(app: FastAPI, keys: Sequence[str]) -> list[DependsParam]:
    """The route dependencies that admit only requests carrying one of ``keys`` (none when ``keys`` is empty).

    Installs on ``app`` the handler that answers a refused request with 401 in OpenAI's error shape.
    """
    auth = Directory(admin_tokens=tuple(k for k in keys if k))
    if not auth.enabled:
        return []
    app.add_exception_handler(ApiKeyRequired, _unauthorized)

    def check(request: Request) -> None:
        candidate = bearer_token(request.headers.get("authorization", ""))
        if candidate is None:
            raise ApiKeyRequired("You didn't provide an API key: send it as 'Authorization: Bearer <key>'.")
        if auth.principal(candidate) is None:
            raise ApiKeyRequired("Incorrect API key provided.")

    return [Depends(check)]
