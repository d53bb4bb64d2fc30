"""An OpenAI-compatible face for workflows: ``POST /v1/chat/completions`` and ``GET /v1/models``.

Any OpenAI client (and the tools built on one) can call a baton workflow: ``model`` names it as
``baton:<workflow>``. The last ``user`` message is the run's task; the messages before it are its
history, kept on the run's metadata as JSON under ``history`` (the newest that fit in one
metadata value) so that roles can read them once runs have threads. The answer's ``content`` is
the run's result; ``id`` is ``chatcmpl-<run id>`` and the ``X-Baton-Run-Id`` header names the run.

With ``stream=true`` the answer streams from the run's event log as ``chat.completion.chunk``
server-sent events: the tokens the workflow's last role generates (roles with no ``next`` and no
routes), as that role generates them, then whatever of the result follows them, then a chunk
with ``finish_reason`` and ``data: [DONE]``. Text-completion roles answer their prompt followed by
what the model generated (the notebook's behaviour), and the log carries only the generated
part: there the streamed text is the result's generated part. A run that fails or is cancelled
ends the stream with an ``error`` object (which OpenAI clients raise) and answers 422 without
streaming. A client that goes away does not cancel the run: runs are durable, and
``POST /v1/runs/{id}/cancel`` stops one. Same bearer tokens as every ``/v1`` route.
"""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

import msgspec
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, StreamingResponse

from ....broker import RunRecord
from ....protocol import Cancelled, Done, Failed, Tokens
from ..api import SSE_HEADERS, SUBMIT_RESPONSES, ApiContext, v1_router
from ..bodies import json_body
from .runs import HISTORY_KEY, RunRefused, Runs, fit_history, inlined_body, terminal_roles

__all__ = ["MODEL_PREFIX", "ChatCompletionRequest", "openai_router"]

MODEL_PREFIX = "baton:"
"""What a model name starts with: ``baton:<workflow>``."""

RUN_HEADER = "X-Baton-Run-Id"


class TextPart(msgspec.Struct, frozen=True, kw_only=True):
    """One part of a message's content (only ``text`` parts carry a task)."""

    type: str = "text"
    text: str = ""


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message of the conversation, as OpenAI's clients send it."""

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The message's text (its text parts joined)."""
        if isinstance(self.content, list):
            return "".join(p.text for p in self.content if p.type == "text")
        return self.content or ""


class ChatCompletionRequest(msgspec.Struct, frozen=True, kw_only=True):
    """A chat completion request: ``model`` is ``baton:<workflow>``; other OpenAI fields (temperature,
    max_tokens, tools...) are accepted and ignored: the workflow's roles decide how they generate."""

    model: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    messages: Annotated[list[ChatMessage], msgspec.Meta(min_length=1)]
    stream: bool = False


def _error_doc(message: str, kind: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": kind, "code": kind}}


def _error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSONResponse:
    """An error in OpenAI's shape (``{"error": {"message", "type", "code"}}``)."""
    return JSONResponse(_error_doc(message, kind), status_code=status, headers=headers)


def _refused(exc: RunRefused) -> JSONResponse:
    kind = {404: "model_not_found", 429: "rate_limit_exceeded", 503: "server_overloaded"}.get(exc.status,
                                                                                           "invalid_request_error")
    return _error(exc.status, str(exc), kind, exc.headers or None)


def openai_router(ctx: ApiContext) -> APIRouter:
    """``/v1/chat/completions`` and ``/v1/models`` over the workflows ``ctx`` serves."""
    runs = Runs(ctx)
    router = v1_router(ctx, tags=["openai"])

    def model_card(name: str) -> dict[str, Any]:
        return {"id": f"{MODEL_PREFIX}{name}", "object": "model", "created": 0, "owned_by": "baton"}

    @router.get("/models", summary="The workflows, as OpenAI models named baton:<workflow>")
    def list_models() -> dict[str, Any]:
        return {"object": "list", "data": [model_card(n) for n in runs.workflow_names()]}

    @router.get("/models/{model}", summary="One workflow, as an OpenAI model",
                responses={404: {"description": "No such workflow"}})
    def get_model(model: str) -> Any:
        name = model.removeprefix(MODEL_PREFIX)
        if not model.startswith(MODEL_PREFIX) or name not in runs.workflow_names():
            return _error(404, f"no model {model!r} (models are baton:<workflow>: GET /v1/models)", "model_not_found")
        return model_card(name)

    @router.post("/chat/completions", summary="Run a workflow on the last user message (OpenAI's shape)",
                 openapi_extra=inlined_body(ChatCompletionRequest),
                 responses={**SUBMIT_RESPONSES, 404: {"description": "No such workflow (model)"},
                            422: {"description": "No user message, or the run failed or was cancelled"},
                            200: {"content": {"text/event-stream": {}},
                                  "description": "chat.completion, or chat.completion.chunk events with stream"}})
    async def chat_completions(
        body: Annotated[ChatCompletionRequest, Depends(json_body(ChatCompletionRequest))],
    ) -> Any:
        if not body.model.startswith(MODEL_PREFIX):
            return _error(404, f"no model {body.model!r} (models are baton:<workflow>: GET /v1/models)",
                         "model_not_found")
        workflow = body.model.removeprefix(MODEL_PREFIX)
        users = [i for i, m in enumerate(body.messages) if m.role == "user" and m.text().strip()]
        if not users:
            return _error(422, "no user message with text: the last user message is the workflow's task",
                         "invalid_request_error")
        last = users[-1]
        history = fit_history([{"role": m.role, "content": m.text()} for m in body.messages[:last]])
        try:
            wf = runs.workflow(workflow)
            run_id = await runs.start(workflow, body.messages[last].text(),
                                      metadata={"via": "openai", **({HISTORY_KEY: history} if history else {})})
        except RunRefused as exc:
            return _refused(exc)
        headers = {RUN_HEADER: run_id}
        if body.stream:
            chunks = _stream(runs, run_id, body.model, terminal_roles(wf))
            return StreamingResponse(chunks, media_type="text/event-stream", headers={**SSE_HEADERS, **headers})
        created = int(time.time())
        async for _, event in runs.follow(run_id):
            if isinstance(event, Done):
                rec = await runs.record(run_id)
                return JSONResponse(_completion(run_id, body.model, created, event.output, rec), headers=headers)
            if isinstance(event, Failed | Cancelled):
                return _error(422, _run_error(run_id, event), "run_failed", headers)
        return _error(422, f"run {run_id} ended without a result (its events expired)", "run_failed", headers)

    return router


def _run_error(run_id: str, event: Failed | Cancelled) -> str:
    what = "failed" if isinstance(event, Failed) else "was cancelled"
    return f"run {run_id} {what}: {event.reason or 'no reason given'}"


def _usage(record: RunRecord | None) -> dict[str, int]:
    tokens = record.usage.tokens if record is not None else 0
    return {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens}


def _completion(run_id: str, model: str, created: int, content: str, record: RunRecord | None) -> dict[str, Any]:
    return {"id": f"chatcmpl-{run_id}", "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": None},
                         "finish_reason": "stop", "logprobs": None}],
            "usage": _usage(record)}


async def _stream(runs: Runs, run_id: str, model: str, last_roles: frozenset[str]) -> AsyncIterator[str]:
    """The run as ``chat.completion.chunk`` events: its last role's tokens live, then the rest of its result."""
    created = int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
        doc = {"id": f"chatcmpl-{run_id}", "object": "chat.completion.chunk", "created": created, "model": model,
               "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}], **extra}
        return f"data: {json.dumps(doc)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    streamed = ""
    async for _, event in runs.follow(run_id):
        if isinstance(event, Tokens) and event.role in last_roles:
            streamed += event.text
            yield chunk({"content": event.text})
        elif isinstance(event, Done):
            if not streamed or event.output.startswith(streamed):
                rest = event.output[len(streamed):]
                if rest:
                    yield chunk({"content": rest})
            rec = await runs.record(run_id)
            yield chunk({}, "stop", usage=_usage(rec))
            yield "data: [DONE]\n\n"
            return
        elif isinstance(event, Failed | Cancelled):
            yield f"data: {json.dumps(_error_doc(_run_error(run_id, event), 'run_failed'))}\n\n"
            return
    yield f"data: {json.dumps(_error_doc(f'run {run_id} ended without a result', 'run_failed'))}\n\n"
