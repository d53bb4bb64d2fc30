"""``baton serve-model``: a local Hugging Face model behind an OpenAI-compatible HTTP API.

Many workers (``BATON_MODEL=http://host:port/v1``) can then share one loaded model. Endpoints:
``POST /v1/completions`` (``prompt`` a string or a list), ``POST /v1/chat/completions``
(messages joined with newlines, or the tokenizer's chat template when it has one),
``GET /v1/models`` and ``GET /health``. With API keys (``BATON_MODEL_API_KEYS``, ``--api-key``)
every ``/v1`` route needs ``Authorization: Bearer <key>`` (:mod:`~baton.agents.serving.apikeys`);
``/health`` stays open, it accepts no work. Decoding is greedy, as in the workers; the ``text``
returned is the continuation only, as the OpenAI API does.

Chat requests pass ``tools``, ``tool_choice``, ``response_format`` and ``stop`` through to the
backend's ``chat`` (:mod:`baton.protocol.chat`); an answer with tool calls comes back in OpenAI's
shape (``message.tool_calls``, ``finish_reason: "tool_calls"``; streamed as one ``delta.tool_calls``
chunk). Text models render the messages with the chat template of
:mod:`~baton.agents.backends.chatting` and never call tools. ``stop`` on completions cuts each
continuation at the first stop string.

Concurrent requests are batched (:class:`~baton.agents.serving.batcher.Batcher`): those that
arrive within ``batch_wait_ms`` of each other share one generate call of up to ``max_batch``
prompts, with the same texts as alone. ``"stream": true`` answers with server-sent events as the
OpenAI API does (:mod:`~baton.agents.serving.sse`): chunks as tokens are generated, a last chunk
per choice with its ``finish_reason``, a usage chunk when ``stream_options.include_usage``, then
``data: [DONE]``. Each completion choice also carries ``completion_tokens`` (its own count; the
``usage`` block sums them), which :class:`~baton.agents.backends.http.HTTPBackend` reads.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from ...protocol import chat
from ...protocol.codec import ProtocolError
from ..backends import ModelBackend, ModelRejected, ModelUnavailable, is_http_model, load_backend
from ..backends.base import DEFAULT_MODEL, Generation
from ..backends.chatting import OnTokens, StopFilter, cut_at_stop
from ..backends.resolve import cached_snapshot
from ..backends.twin import twin_path
from .apikeys import require_api_keys
from .batcher import DEFAULT_BATCH_WAIT_MS, DEFAULT_MAX_BATCH, Batcher
from .limits import MAX_BODY_BYTES, MAX_PROMPTS, install, read_body
from .sse import DONE, Row, StreamShape, usage

__all__ = ["ChatRequest", "CompletionRequest", "app_from_env", "create_app", "serve"]

log = logging.getLogger("baton.serve")

MAX_TOKENS_LIMIT = 4096


class StreamOptions(BaseModel):
    """OpenAI's ``stream_options``."""

    model_config = ConfigDict(extra="ignore")
    include_usage: bool = False


class CompletionRequest(BaseModel):
    """The fields of ``/v1/completions`` baton uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = ""
    prompt: str | Annotated[list[str], Field(max_length=MAX_PROMPTS)]
    max_tokens: int = Field(default=16, ge=0, le=MAX_TOKENS_LIMIT)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: str | list[str] | None = None

    def stops(self) -> list[str]:
        """The stop strings asked for."""
        return [self.stop] if isinstance(self.stop, str) else list(self.stop or [])


class ChatMessage(BaseModel):
    """One chat message (OpenAI's shape; content may be null for a tool-calling assistant message)."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class ChatRequest(BaseModel):
    """The fields of ``/v1/chat/completions`` baton uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=16, ge=0, le=MAX_TOKENS_LIMIT)
    stream: bool = False
    stream_options: StreamOptions | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    stop: str | list[str] | None = None

    def as_chat(self) -> chat.ChatRequest:
        """The request as baton's :class:`~baton.protocol.chat.ChatRequest` (``ProtocolError`` if invalid)."""
        body = self.model_dump(include={"messages", "tools", "tool_choice", "response_format"}, exclude_none=True)
        body["messages"] = [m.model_dump(exclude_none=True) for m in self.messages]
        body["max_new_tokens"] = self.max_tokens
        if self.stop:
            body["stop"] = [self.stop] if isinstance(self.stop, str) else self.stop
        return chat.from_openai(body, chat.ChatRequest)


class _Model:
    """The backend behind a batcher, and the tokenizer work around a generation."""

    def __init__(self, backend: ModelBackend, batcher: Batcher) -> None:
        self.backend = backend
        self.batcher = batcher
        self.tokenizer: Any = getattr(backend, "tokenizer", None)

    async def complete(self, job: _Job) -> list[Row]:
        """The rows of ``job``, generated in whatever batch it joins."""
        return job.rows(await asyncio.wrap_future(job.submit(None)))

    async def stream(self, job: _Job) -> AsyncIterator[tuple[int, str] | list[Row]]:
        """``(index, text)`` chunks while generating, then the rows (or the generation's error)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[int, str] | None] = asyncio.Queue()

        def on_tokens(index: int, text: str) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, (index, text))

        future = job.submit(on_tokens)
        future.add_done_callback(lambda _: loop.call_soon_threadsafe(queue.put_nowait, None))
        while (item := await queue.get()) is not None:
            yield item
        yield job.rows(future.result())

    def completions(self, prompts: Sequence[str], max_tokens: int, stops: Sequence[str]) -> _Job:
        """Generating ``prompts`` (cut at ``stops``) as a job."""

        def submit(on_tokens: OnTokens | None) -> Future[Any]:
            stopping = StopFilter(on_tokens, [stops] * len(prompts)) if on_tokens is not None and stops else None
            future = self.batcher.submit(prompts, max_tokens, stopping or on_tokens)
            if stopping is not None:
                future.add_done_callback(lambda _: stopping.close())
            return future

        return _Job(submit, lambda gens: self.rows(prompts, gens, max_tokens, stops))

    def chat(self, request: chat.ChatRequest) -> _Job:
        """Answering one chat request as a job."""

        def rows(result: chat.ChatResult) -> list[Row]:
            calls = [chat.to_openai(c) for c in result.message.tool_calls or ()]
            return [Row(result.message.content or "", result.prompt_tokens, result.completion_tokens,
                        result.finish_reason, tool_calls=calls or None)]

        return _Job(lambda on_tokens: self.batcher.submit_chat(request, on_tokens), rows)

    def rows(self, prompts: Sequence[str], gens: list[Generation], max_tokens: int,
             stops: Sequence[str] = ()) -> list[Row]:
        """Continuations (the prompt, or the part kept of a truncated one, cut off; then cut at a stop
        string) and token counts."""
        out = []
        counts = ([len(ids) for ids in self.tokenizer(list(prompts))["input_ids"]] if self.tokenizer is not None
                  else [0] * len(prompts))
        for prompt, g, n_prompt in zip(prompts, gens, counts, strict=True):
            head = prompt
            if g.truncated and self.tokenizer is not None:
                kept = self.backend.encode([prompt], max_new_tokens=max_tokens).kept_ids[0]  # type: ignore[attr-defined]
                head = self.tokenizer.decode(list(kept), skip_special_tokens=False, clean_up_tokenization_spaces=False)
            text, stopped = cut_at_stop(g.text[len(head):] if g.text.startswith(head) else g.text, stops)
            finish = "length" if g.new_tokens >= max_tokens and not stopped else "stop"
            out.append(Row(text, n_prompt, g.new_tokens, finish))
        return out


@dataclass(frozen=True, slots=True)
class _Job:
    """One request's generation: how to queue it (with or without a token callback) and its rows."""

    submit: Callable[[OnTokens | None], Future[Any]]
    rows: Callable[[Any], list[Row]]


def _error(exc: Exception) -> JSONResponse:
    """An OpenAI-style error answer: 400 for a refused request, 503 for an outage, else 500."""
    if isinstance(exc, ModelRejected):
        status, kind, message = 400, "invalid_request_error", exc.reason
    elif isinstance(exc, ModelUnavailable):
        status, kind, message = 503, "server_error", exc.reason
    else:
        log.exception("generation failed", exc_info=exc)
        status, kind, message = 500, "server_error", f"generation failed: {type(exc).__name__}"
    return JSONResponse({"error": {"message": message, "type": kind, "param": None, "code": None}}, status)


async def _answer(model: _Model, job: _Job, shape: StreamShape, stream: bool) -> Any:
    """The generated rows of ``job``; or the response to send instead: the stream when
    ``stream`` is asked, an OpenAI-style error when generation fails."""
    if stream:
        return await _streamed(model, job, shape)
    try:
        return await model.complete(job)
    except Exception as exc:  # noqa: BLE001 - answered as an HTTP error
        return _error(exc)


async def _streamed(model: _Model, job: _Job, shape: StreamShape) -> Any:
    """A server-sent-event response, or an error answer if the generation fails before its first chunk."""
    events = model.stream(job)
    try:
        first = await anext(events)
    except Exception as exc:  # noqa: BLE001 - answered as an HTTP error, the stream has not started
        return _error(exc)

    async def body() -> AsyncIterator[str]:
        for event in shape.start():
            yield event
        item: tuple[int, str] | list[Row] = first
        while isinstance(item, tuple):
            yield shape.chunk(*item)
            try:
                item = await anext(events)
            except Exception:  # noqa: BLE001 - headers are sent: end the stream without [DONE]
                log.exception("generation failed while streaming")
                return
        for index, row in enumerate(item):
            yield shape.finish(index, row)
        if shape.include_usage:
            yield shape.usage(item)
        yield DONE

    return StreamingResponse(body(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


def create_app(backend: ModelBackend, served_name: str | None = None, *, max_batch: int = DEFAULT_MAX_BATCH,
               batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS, api_keys: Sequence[str] = (),
               max_body_bytes: int = MAX_BODY_BYTES) -> FastAPI:
    """The FastAPI app serving ``backend``, batching concurrent requests (see :class:`Batcher`).

    With ``api_keys``, the ``/v1`` routes answer only requests that carry one of them as a bearer token.
    """
    batcher = Batcher(backend, max_batch=max_batch, wait_ms=batch_wait_ms)
    model = _Model(backend, batcher)
    name = served_name or backend.name
    app = FastAPI(title="baton model server", docs_url=None, redoc_url=None)
    app.state.batcher = batcher
    guard = require_api_keys(app, api_keys)
    install(app)  # bodies are read in the handlers, after the key check (agents/serving/limits.py)

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": name, "batches": batcher.batches, "largest_batch": batcher.largest}

    @app.get("/v1/models", dependencies=guard)
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "baton"}]}

    @app.post("/v1/completions", dependencies=guard)
    async def completions(request: Request) -> Any:
        req = await read_body(request, CompletionRequest, max_body_bytes)
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        shape = StreamShape("text_completion", f"cmpl-{uuid.uuid4().hex}", name,
                            include_usage=bool(req.stream_options and req.stream_options.include_usage))
        rows = await _answer(model, model.completions(prompts, req.max_tokens, req.stops()), shape, req.stream)
        if not isinstance(rows, list):
            return rows
        choices = [{"index": i, "text": r.text, "logprobs": None, "finish_reason": r.finish_reason,
                    "completion_tokens": r.new_tokens} for i, r in enumerate(rows)]
        return {"id": shape.id, "object": "text_completion", "created": int(time.time()),
                "model": name, "choices": choices, "usage": usage(rows)}

    @app.post("/v1/chat/completions", dependencies=guard)
    async def chat_completions(request: Request) -> Any:
        req = await read_body(request, ChatRequest, max_body_bytes)
        try:
            wanted = req.as_chat()
        except ProtocolError as exc:
            return JSONResponse({"error": {"message": str(exc), "type": "invalid_request_error", "param": None,
                                           "code": None}}, 400)
        shape = StreamShape("chat.completion", f"chatcmpl-{uuid.uuid4().hex}", name,
                            include_usage=bool(req.stream_options and req.stream_options.include_usage))
        rows = await _answer(model, model.chat(wanted), shape, req.stream)
        if not isinstance(rows, list):
            return rows
        message: dict[str, Any] = {"role": "assistant", "content": rows[0].text}
        if rows[0].tool_calls:
            message = {"role": "assistant", "content": rows[0].text or None, "tool_calls": rows[0].tool_calls}
        choice = {"index": 0, "message": message, "finish_reason": rows[0].finish_reason}
        return {"id": shape.id, "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [choice], "usage": usage(rows)}

    return app


REPLICA_CONFIG_ENV = "_BATON_SERVE_MODEL_CONFIG"
"""How ``serve`` passes its configuration to replica processes (JSON)."""


def app_from_env() -> FastAPI:
    """The app of one replica process (``uvicorn --factory``), configured by ``serve`` through the environment."""
    cfg = json.loads(os.environ[REPLICA_CONFIG_ENV])
    # Streamed requests get every token as it is generated.
    backend = load_backend(cfg["model"], threads=cfg["threads"], flush_tokens=1, flush_ms=0)
    return create_app(backend, cfg["name"], max_batch=cfg["max_batch"], batch_wait_ms=cfg["batch_wait_ms"],
                      api_keys=cfg["api_keys"])


REPLICA_RUNTIME_BYTES = 512 * 2**20
"""What one replica process needs beside its model's weights (Python, torch, the HTTP server: the
twin's replica, whose weights are tiny, is ~470 MiB resident)."""

_WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".gguf")


def default_replicas(model: str | None = None) -> int:
    """Server processes ``serve-model`` runs unless told: one per core this process may use, as many
    as the memory available now holds (each replica loads its own copy of ``model``: its weight
    files plus :data:`REPLICA_RUNTIME_BYTES`), at least one. A replica generates with one torch
    thread, so it keeps about one core busy; on 2 cores shared with three workers and Redis, two
    replicas served 0.81-1.03x the in-process batched throughput where one served 0.73-0.94x
    (BENCHMARKS.md). Where ``model``'s weights are not on disk yet, their size is unknown: half the cores."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    weights = _weights_bytes(model) if model else None
    if weights is None:
        return max(1, cores // 2)
    available = _available_bytes()
    fit = cores if available is None else available // (weights + REPLICA_RUNTIME_BYTES)
    return max(1, min(cores, fit))


def _weights_bytes(model: str) -> int | None:
    """The size of ``model``'s weight files, where they are on disk already: a directory, or the
    default model's cached snapshot or offline twin (None otherwise: a hub id, ``echo``)."""
    path = Path(model).expanduser()
    if not path.is_dir() and model == DEFAULT_MODEL:
        path = Path(cached_snapshot(model) or twin_path())
    if not path.is_dir():
        return None
    return sum(f.stat().st_size for f in path.iterdir() if f.suffix in _WEIGHT_SUFFIXES and f.is_file())


def _available_bytes() -> int | None:
    """Memory available to new processes now (``MemAvailable``), None where it cannot be read."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, served_name: str | None = None,
          threads: int = 1, max_batch: int = DEFAULT_MAX_BATCH, batch_wait_ms: float = DEFAULT_BATCH_WAIT_MS,
          replicas: int = 1, api_keys: Sequence[str] = ()) -> None:
    """Load ``model`` and serve it until interrupted, batching up to ``max_batch`` prompts per generate call.

    ``replicas`` > 1 runs that many server processes on the one port (uvicorn workers), each with
    its own copy of the model and its own batcher: a connection is served by one of them (the CLI's
    default is ``default_replicas(model)``).
    ``api_keys``, when given, are required on the ``/v1`` routes (of every replica).
    """
    import uvicorn

    if is_http_model(model):
        raise ValueError(f"{model}: serve-model serves a local model; give a hub id or a directory")
    if replicas < 1:
        raise ValueError(f"replicas must be >= 1, got {replicas}")
    os.environ[REPLICA_CONFIG_ENV] = json.dumps({"model": model, "name": served_name or model, "threads": threads,
                                                 "max_batch": max_batch, "batch_wait_ms": batch_wait_ms,
                                                 "api_keys": list(api_keys)})
    log.info("serving %s on http://%s:%d/v1 (%d replica(s), batches of up to %d prompts, %g ms wait, %s)",
             model, host, port, replicas, max_batch, batch_wait_ms,
             f"{len(api_keys)} API key(s) required" if api_keys else "no authentication")
    from ..ops.timeouts import TimedH11Protocol  # slow clients get 408 (headers, bodies)

    if replicas == 1:
        uvicorn.run(app_from_env(), host=host, port=port, log_level="warning", http=TimedH11Protocol)
    else:
        uvicorn.run(f"{__name__}:app_from_env", factory=True, workers=replicas, host=host, port=port,
                    log_level="warning", http=TimedH11Protocol)
