"""A backend on an OpenAI-compatible HTTP server: vLLM, Ollama, llama.cpp server, ``baton serve-model``.

The model name is the server's base URL, optionally with query parameters::

    http://127.0.0.1:8000/v1                      # /v1/completions, the server's first model
    http://127.0.0.1:8000/v1?model=tiny&api=chat  # /v1/chat/completions with model "tiny"

A ``Generation``'s text is the prompt followed by the returned text, as with the Hugging Face
backend (the seed notebook reads ``generated_text``, prompt included). Decoding is requested
greedy (``temperature = 0``). How a batch of prompts is sent is the ``batch`` parameter:

- ``batch=list``: one ``/completions`` request with ``prompt`` a list (the OpenAI API allows it;
  ``baton serve-model`` and vLLM accept it), so the server generates the batch together;
- ``batch=each``: concurrent requests, one per prompt, which every compatible server accepts;
- ``batch=auto`` (the default): ``list``, until a server refuses a list (HTTP 400/422) but
  accepts its first prompt alone; then ``each`` from there on. ``api=chat`` always sends ``each``.

``chat`` sends each chat request to ``/chat/completions`` (concurrently, up to ``concurrency``
requests in flight), passing ``tools``, ``tool_choice``, ``response_format`` and ``stop`` through
as given and reading the answer's ``tool_calls`` (:mod:`baton.protocol.chat`). ``stop`` on
``generate`` is sent to the server as OpenAI's ``stop``.

Per-prompt token counts come from each choice's ``completion_tokens`` (``baton serve-model``
sends it), or from ``usage`` for a single prompt; otherwise they are 0. ``OPENAI_API_KEY``,
when set, is sent as a bearer token. Failures raise
:class:`~baton.agents.backends.errors.ModelUnavailable` when the server is down or overloaded
(connection refused or reset, timeouts, HTTP 408/425/429/5xx, with the ``Retry-After`` header's
delay) and :class:`~baton.agents.backends.errors.ModelRejected` when it refused the request for
good (HTTP 400/401/403/404/405/413/422, with the server's reason); anything else unexpected (an
answer that is not JSON, an unknown status) raises :class:`HTTPBackendError`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from ...protocol.chat import ChatMessage, ChatRequest, ChatResult, FinishReason, from_openai, to_openai
from ...protocol.codec import ProtocolError
from .base import DEFAULT_MAX_NEW_TOKENS, Generation
from .errors import PERMANENT_STATUS, TRANSIENT_STATUS, ModelError, ModelRejected, ModelUnavailable, parse_retry_after

__all__ = ["HTTPBackend", "HTTPBackendError"]

APIS = ("completions", "chat")
BATCH_MODES = ("auto", "list", "each")
_ERRNO = re.compile(r"^\[Errno -?\d+\]\s*")
_OUTAGES = (httpx.TimeoutException, httpx.NetworkError, httpx.RemoteProtocolError, httpx.ProxyError)


class HTTPBackendError(ModelError):
    """The server answered something unexpected (neither an outage nor a refusal)."""


def _transport_reason(exc: httpx.HTTPError) -> str:
    """``"connection refused"``, ``"timed out (ReadTimeout)"``...: a short phrase for an outage."""
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out ({type(exc).__name__})"
    text = _ERRNO.sub("", str(exc)).strip() or type(exc).__name__
    return text[:1].lower() + text[1:]


def _server_reason(resp: httpx.Response) -> str:
    """The reason an error answer gives: OpenAI's ``error.message``, FastAPI's ``detail``, or the text."""
    try:
        body = resp.json()
    except ValueError:
        return resp.text.strip()[:300] or resp.reason_phrase
    if isinstance(body, dict):
        error = body.get("error")
        found = error.get("message") if isinstance(error, dict) else error
        found = found or body.get("detail") or body.get("message")
        if found:
            return (found if isinstance(found, str) else json.dumps(found))[:300]
    return json.dumps(body)[:300]


class HTTPBackend:
    """Generate with an OpenAI-compatible server.

    Args:
        url: the server's base URL (``.../v1``), with optional ``model`` and ``api`` query parameters.
        timeout: seconds per request.
        concurrency: requests in flight at once for one batch.
    """

    def __init__(self, url: str, *, timeout: float = 120.0, concurrency: int = 8) -> None:
        parts = urlsplit(url)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.name = url
        self.api = query.get("api", "completions")
        if self.api not in APIS:
            raise ValueError(f"{url}: api must be one of {', '.join(APIS)}, got {self.api!r}")
        self.batch = query.get("batch", "auto")
        if self.batch not in BATCH_MODES:
            raise ValueError(f"{url}: batch must be one of {', '.join(BATCH_MODES)}, got {self.batch!r}")
        path = parts.path.rstrip("/") or "/v1"
        self.base_url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get("OPENAI_API_KEY")) else {}
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http-model")
        self._model = query.get("model", "")

    def __repr__(self) -> str:
        return f"HTTPBackend({self.base_url!r}, api={self.api!r}, model={self._model!r}, batch={self.batch!r})"

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        endpoint = f"{self.base_url}{path}"
        try:
            resp = self.client.request(method, path, json=json)
        except _OUTAGES as exc:
            raise ModelUnavailable(endpoint, _transport_reason(exc)) from None
        except httpx.HTTPError as exc:
            raise HTTPBackendError(endpoint, f"{type(exc).__name__}: {exc}") from None
        status = resp.status_code
        if status in TRANSIENT_STATUS:
            raise ModelUnavailable(endpoint, f"HTTP {status}: {_server_reason(resp)}", status=status,
                                   retry_after=parse_retry_after(resp.headers.get("Retry-After")))
        if status in PERMANENT_STATUS:
            raise ModelRejected(endpoint, f"HTTP {status}: {_server_reason(resp)}", status=status)
        if status >= 400:
            raise HTTPBackendError(endpoint, f"HTTP {status}: {_server_reason(resp)}", status=status)
        try:
            return resp.json()
        except ValueError:
            raise HTTPBackendError(endpoint, "the answer is not JSON") from None

    @property
    def model(self) -> str:
        """The model name sent to the server (its first listed model unless the URL names one)."""
        if not self._model:
            data = self._request("GET", "/models").get("data") or []
            if not data:
                raise HTTPBackendError(f"{self.base_url}/models", "lists no model; name one with ?model=")
            self._model = str(data[0]["id"])
        return self._model

    def probe(self) -> None:
        """Ask the server whether it is up (``GET /models``); raise as a generation call would."""
        self._request("GET", "/models")

    def _one(self, prompt: str, max_new_tokens: int, stop: Sequence[str] | None = None) -> Generation:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0}
        if stop:
            body["stop"] = list(stop)
        if self.api == "chat":
            body["messages"] = [{"role": "user", "content": prompt}]
            answer = self._request("POST", "/chat/completions", body)
        else:
            body["prompt"] = prompt
            answer = self._request("POST", "/completions", body)
        try:
            choice = answer["choices"][0]
            text = choice["message"]["content"] if self.api == "chat" else choice["text"]
        except (KeyError, IndexError, TypeError):
            raise HTTPBackendError(self.base_url, f"unexpected answer {str(answer)[:200]}") from None
        tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
        return Generation(text=prompt + (text or ""), new_tokens=tokens, truncated=False)

    def _list(self, prompts: Sequence[str], max_new_tokens: int, stop: Sequence[str] | None) -> list[Generation]:
        """All ``prompts`` in one ``/completions`` request."""
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0,
                                "prompt": list(prompts)}
        if stop:
            body["stop"] = list(stop)
        answer = self._request("POST", "/completions", body)
        try:
            choices = sorted(answer["choices"], key=lambda c: int(c.get("index", 0)))
            texts = [c["text"] or "" for c in choices]
            counts = [c.get("completion_tokens") for c in choices]
        except (KeyError, TypeError, ValueError, AttributeError):
            raise HTTPBackendError(self.base_url, f"unexpected answer {str(answer)[:200]}") from None
        if len(texts) != len(prompts):
            raise HTTPBackendError(self.base_url, f"{len(texts)} choices for {len(prompts)} prompts")
        if len(prompts) == 1 and counts[0] is None:
            counts = [(answer.get("usage") or {}).get("completion_tokens")]
        return [Generation(text=p + t, new_tokens=int(n or 0), truncated=False)
                for p, t, n in zip(prompts, texts, counts, strict=True)]

    def _as_list(self, prompts: Sequence[str], max_new_tokens: int,
                 stop: Sequence[str] | None) -> list[Generation] | None:
        """The generations from one list request, or None when this server takes no prompt lists."""
        try:
            return self._list(prompts, max_new_tokens, stop)
        except ModelRejected as refused:
            if self.batch == "list" or refused.status not in (400, 422):
                raise
            self._one(prompts[0], max_new_tokens, stop)  # refused too: the request is bad, not the list
            self.batch = "each"
            return None

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        on_tokens: Callable[[int, str], None] | None = None, stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """The batch in one request (``batch=list``) or one request per prompt, concurrently
        (``batch=each``); results in prompt order. ``on_tokens`` gets each prompt's continuation
        in one chunk as its answer arrives. ``stop`` is passed to the server."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        if not prompts:
            return []
        if self.api == "completions" and self.batch != "each" and len(prompts) > 1:
            gens = self._as_list(prompts, max_new_tokens, stop)
            if gens is not None:
                if on_tokens is not None:
                    for index, gen in enumerate(gens):
                        if len(gen.text) > len(prompts[index]):
                            on_tokens(index, gen.text[len(prompts[index]):])
                return gens

        def one(index: int) -> Generation:
            gen = self._one(prompts[index], max_new_tokens, stop)
            if on_tokens is not None and len(gen.text) > len(prompts[index]):
                on_tokens(index, gen.text[len(prompts[index]):])
            return gen

        return list(self.pool.map(one, range(len(prompts))))

    def chat(
        self, requests: Sequence[ChatRequest], *, on_tokens: Callable[[int, str], None] | None = None,
    ) -> list[ChatResult]:
        """One ``/chat/completions`` request per chat request, concurrently; results in request
        order. ``on_tokens`` gets each answer's text in one chunk as it arrives."""

        def one(index: int) -> ChatResult:
            result = self._chat_one(requests[index])
            if on_tokens is not None and result.message.content:
                on_tokens(index, result.message.content)
            return result

        return list(self.pool.map(one, range(len(requests))))

    def chat_body(self, request: ChatRequest) -> dict[str, Any]:
        """The ``/chat/completions`` body for ``request`` (greedy; tools and formats as given)."""
        max_new = request.max_new_tokens if request.max_new_tokens is not None else DEFAULT_MAX_NEW_TOKENS
        wire = to_openai(request)
        body: dict[str, Any] = {"model": self.model, "messages": wire["messages"], "max_tokens": max_new,
                                "temperature": 0}
        for key in ("tools", "tool_choice", "response_format", "stop"):
            if key in wire:
                body[key] = wire[key]
        return body

    def _chat_one(self, request: ChatRequest) -> ChatResult:
        answer = self._request("POST", "/chat/completions", self.chat_body(request))
        try:
            choice = answer["choices"][0]
            message = from_openai(choice["message"], ChatMessage)
        except (KeyError, IndexError, TypeError, ProtocolError) as exc:
            detail = f"{exc}; " if isinstance(exc, ProtocolError) else ""
            raise HTTPBackendError(self.base_url, f"unexpected answer: {detail}{str(answer)[:200]}") from None
        if not message.tool_calls and message.tool_calls is not None:
            message = ChatMessage(role=message.role, content=message.content, name=message.name)
        reason = choice.get("finish_reason")
        finish: FinishReason = (reason if reason in ("stop", "length", "tool_calls", "content_filter", "function_call")
                                else "tool_calls" if message.tool_calls else "stop")
        usage = answer.get("usage") or {}
        return ChatResult(message=message, finish_reason=finish,
                          prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          completion_tokens=int(usage.get("completion_tokens") or 0))

    def close(self) -> None:
        """Close the connection pool."""
        self.pool.shutdown(wait=False)
        self.client.close()
