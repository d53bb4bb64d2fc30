"""``baton serve-model``: a local Hugging Face model behind an OpenAI-compatible HTTP API.

Many workers (``BATON_MODEL=http://host:port/v1``) can then share one loaded model. Endpoints:
``POST /v1/completions`` (``prompt`` a string or a list, batched in one generate call),
``POST /v1/chat/completions`` (messages joined with newlines, or the tokenizer's chat template
when it has one), ``GET /v1/models`` and ``GET /health``. Decoding is greedy, as in the
workers; the ``text`` returned is the continuation only, as the OpenAI API does.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field

from baton.agents.backends import ModelBackend, is_http_model, load_backend

__all__ = ["ChatRequest", "CompletionRequest", "create_app", "serve"]

log = logging.getLogger("baton.serve")

MAX_TOKENS_LIMIT = 4096


class CompletionRequest(BaseModel):
    """The fields of ``/v1/completions`` baton uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = ""
    prompt: str | list[str]
    max_tokens: int = Field(default=16, ge=0, le=MAX_TOKENS_LIMIT)


class ChatMessage(BaseModel):
    """One chat message."""

    model_config = ConfigDict(extra="ignore")
    role: str
    content: str


class ChatRequest(BaseModel):
    """The fields of ``/v1/chat/completions`` baton uses; others are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")
    model: str = ""
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int = Field(default=16, ge=0, le=MAX_TOKENS_LIMIT)


class _Model:
    """The backend behind a lock: one generate call at a time (a prompt list is one batch)."""

    def __init__(self, backend: ModelBackend) -> None:
        self.backend = backend
        self.lock = threading.Lock()
        self.tokenizer: Any = getattr(backend, "tokenizer", None)

    def complete(self, prompts: Sequence[str], max_tokens: int) -> list[tuple[str, int, int]]:
        """``(continuation, prompt tokens, new tokens)`` per prompt."""
        with self.lock:
            gens = self.backend.generate(list(prompts), max_new_tokens=max_tokens)
        out = []
        for prompt, g in zip(prompts, gens, strict=True):
            head = prompt
            if g.truncated and self.tokenizer is not None:
                kept = self.backend.encode([prompt], max_new_tokens=max_tokens).kept_ids[0]  # type: ignore[attr-defined]
                head = self.tokenizer.decode(list(kept), skip_special_tokens=False, clean_up_tokenization_spaces=False)
            text = g.text[len(head):] if g.text.startswith(head) else g.text
            n_prompt = len(self.tokenizer(prompt)["input_ids"]) if self.tokenizer is not None else 0
            out.append((text, n_prompt, g.new_tokens))
        return out

    def chat_prompt(self, messages: list[ChatMessage]) -> str:
        """The prompt for chat ``messages``."""
        if self.tokenizer is not None and getattr(self.tokenizer, "chat_template", None):
            rendered: str = self.tokenizer.apply_chat_template(
                [m.model_dump() for m in messages], tokenize=False, add_generation_prompt=True)
            return rendered
        return "\n".join(m.content for m in messages)


def _usage(rows: list[tuple[str, int, int]]) -> dict[str, int]:
    p, c = sum(r[1] for r in rows), sum(r[2] for r in rows)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


def _finish(new: int, max_tokens: int) -> str:
    return "length" if new >= max_tokens else "stop"


def create_app(backend: ModelBackend, served_name: str | None = None) -> FastAPI:
    """The FastAPI app serving ``backend``."""
    model = _Model(backend)
    name = served_name or backend.name
    app = FastAPI(title="baton model server", docs_url=None, redoc_url=None)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "model": name}

    @app.get("/v1/models")
    def models() -> dict[str, Any]:
        return {"object": "list", "data": [{"id": name, "object": "model", "owned_by": "baton"}]}

    @app.post("/v1/completions")
    def completions(req: CompletionRequest) -> dict[str, Any]:
        prompts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        rows = model.complete(prompts, req.max_tokens)
        choices = [{"index": i, "text": text, "logprobs": None, "finish_reason": _finish(new, req.max_tokens)}
                   for i, (text, _, new) in enumerate(rows)]
        return {"id": f"cmpl-{uuid.uuid4().hex}", "object": "text_completion", "created": int(time.time()),
                "model": name, "choices": choices, "usage": _usage(rows)}

    @app.post("/v1/chat/completions")
    def chat(req: ChatRequest) -> dict[str, Any]:
        rows = model.complete([model.chat_prompt(req.messages)], req.max_tokens)
        text, _, new = rows[0]
        choice = {"index": 0, "message": {"role": "assistant", "content": text},
                  "finish_reason": _finish(new, req.max_tokens)}
        return {"id": f"chatcmpl-{uuid.uuid4().hex}", "object": "chat.completion", "created": int(time.time()),
                "model": name, "choices": [choice], "usage": _usage(rows)}

    return app


def serve(model: str, *, host: str = "127.0.0.1", port: int = 8000, served_name: str | None = None,
          threads: int = 1) -> None:
    """Load ``model`` and serve it until interrupted."""
    import uvicorn

    if is_http_model(model):
        raise ValueError(f"{model}: serve-model serves a local model; give a hub id or a directory")
    backend = load_backend(model, threads=threads)
    log.info("serving %s on http://%s:%d/v1", model, host, port)
    uvicorn.run(create_app(backend, served_name or model), host=host, port=port, log_level="warning")
