"""What one request to ``baton serve-model`` may ask, checked after its API key and before its body is parsed.

A route takes its body as ``await read_body(request, Kind, max_bytes)`` inside the handler, so the
API-key dependency has answered first (a request without a key gets 401 and its body is never
read). The body is read in chunks and refused with 413 once it passes ``max_bytes``, whether or
not it declared a ``Content-Length``; one that does not validate gets the 422 FastAPI gives. A
completion's prompt list holds at most ``MAX_PROMPTS`` prompts; the batcher runs it in batches of
at most ``--max-batch``.
"""

from __future__ import annotations

from typing import TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ValidationError

from ..ops.timeouts import read_capped

__all__ = ["MAX_BODY_BYTES", "MAX_PROMPTS", "BodyTooLarge", "install", "read_body"]

MAX_BODY_BYTES = 1 << 20
"""Largest request body serve-model reads (1 MiB: the model's context is a few thousand tokens)."""

MAX_PROMPTS = 1024
"""Most prompts one completion request may list."""

M = TypeVar("M", bound=BaseModel)


class BodyTooLarge(Exception):
    """A request body over the server's limit."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(f"the request body is over {max_bytes} bytes")
        self.message = str(self)


def _too_large(_: Request, exc: Exception) -> JSONResponse:
    body = {"error": {"message": str(exc), "type": "invalid_request_error", "param": None, "code": None}}
    return JSONResponse(body, 413)


def install(app: FastAPI) -> None:
    """Answer ``BodyTooLarge`` with 413 in OpenAI's error shape."""
    app.add_exception_handler(BodyTooLarge, _too_large)


async def read_body(request: Request, kind: type[M], max_bytes: int = MAX_BODY_BYTES) -> M:
    """The request body (at most ``max_bytes``) validated as ``kind``."""
    data = await read_capped(request, max_bytes, BodyTooLarge)
    try:
        return kind.model_validate_json(data)
    except ValidationError as exc:
        raise RequestValidationError(exc.errors(include_url=False)) from None
