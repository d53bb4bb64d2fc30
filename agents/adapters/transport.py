"""An httpx transport that answers OpenAI's ``POST /chat/completions`` with ``ctx.chat_once``.

A framework that talks to models through the official ``openai`` client (Pydantic AI's
``OpenAIChatModel``, and others) gets that client with this transport underneath: the framework's
own request mapping stays as it is, and each model call becomes one journaled, budgeted baton
chat call of the handler's role. Nothing leaves the process; any other route answers 404.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from ..app import Context
from .chat import chat_request, completion_message

__all__ = ["BASE_URL", "ChatTransport", "openai_client"]

BASE_URL = "http://baton.invalid/v1"
"""The base URL the client is given (never resolved: the transport answers in-process)."""


class ChatTransport(httpx.AsyncBaseTransport):
    """Chat completions through ``ctx`` (no streaming: tokens stream as the run's events)."""

    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.calls = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if request.method != "POST" or not request.url.path.endswith("/chat/completions"):
            return _error(404, f"baton answers only POST /chat/completions here, not {request.method} "
                               f"{request.url.path}")
        body: dict[str, Any] = json.loads(await request.aread())
        if body.get("stream"):
            return _error(400, "a baton role calls its model without streaming (its tokens are the run's events)")
        req = chat_request(body["messages"], tools=body.get("tools") or (), tool_choice=body.get("tool_choice"),
                           response_format=body.get("response_format"),
                           max_new_tokens=body.get("max_completion_tokens") or body.get("max_tokens"))
        result = await self.ctx.chat_once(req)
        self.calls += 1
        usage = {"prompt_tokens": result.prompt_tokens, "completion_tokens": result.completion_tokens,
                 "total_tokens": result.prompt_tokens + result.completion_tokens}
        doc = {"id": f"chatcmpl-{self.ctx.run_id}-{self.ctx.hop}-{self.calls}", "object": "chat.completion",
               "created": int(time.time()), "model": body.get("model", "baton"), "usage": usage,
               "choices": [{"index": 0, "message": completion_message(result), "finish_reason": result.finish_reason,
                            "logprobs": None}]}
        return httpx.Response(200, json=doc, request=request)


def _error(status: int, message: str) -> httpx.Response:
    return httpx.Response(status, json={"error": {"message": message, "type": "invalid_request_error"}})


def openai_client(ctx: Context) -> Any:
    """An ``openai.AsyncOpenAI`` whose chat completions are ``ctx``'s model calls."""
    from openai import AsyncOpenAI

    return AsyncOpenAI(api_key="baton", base_url=BASE_URL, max_retries=0,
                       http_client=httpx.AsyncClient(transport=ChatTransport(ctx)))
