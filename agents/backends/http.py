"""A backend on an OpenAI-compatible HTTP server: vLLM, Ollama, llama.cpp server, ``baton serve-model``.

The model name is the server's base URL, optionally with query parameters::

    http://127.0.0.1:8000/v1                      # /v1/completions, the server's first model
    http://127.0.0.1:8000/v1?model=tiny&api=chat  # /v1/chat/completions with model "tiny"

A ``Generation``'s text is the prompt followed by the returned text, as with the Hugging Face
backend (the seed notebook reads ``generated_text``, prompt included). Decoding is requested
greedy (``temperature = 0``). Prompts of a batch are sent as concurrent requests, one each,
which every OpenAI-compatible server accepts. ``OPENAI_API_KEY``, when set, is sent as a bearer
token. HTTP and connection errors raise, so the worker retries and finally dead-letters.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from .base import DEFAULT_MAX_NEW_TOKENS, Generation

__all__ = ["HTTPBackend", "HTTPBackendError"]

APIS = ("completions", "chat")


class HTTPBackendError(RuntimeError):
    """The server could not be reached or answered with an error."""


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
        path = parts.path.rstrip("/") or "/v1"
        self.base_url = urlunsplit((parts.scheme, parts.netloc, path, "", ""))
        headers = {"Authorization": f"Bearer {key}"} if (key := os.environ.get("OPENAI_API_KEY")) else {}
        self.client = httpx.Client(base_url=self.base_url, timeout=timeout, headers=headers)
        self.pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="http-model")
        self._model = query.get("model", "")

    def __repr__(self) -> str:
        return f"HTTPBackend({self.base_url!r}, api={self.api!r}, model={self._model!r})"

    def _request(self, method: str, path: str, json: Any = None) -> Any:
        try:
            resp = self.client.request(method, path, json=json)
        except httpx.HTTPError as exc:
            raise HTTPBackendError(f"{self.base_url}{path}: {type(exc).__name__}: {exc}") from None
        if resp.status_code >= 400:
            raise HTTPBackendError(f"{self.base_url}{path}: HTTP {resp.status_code}: {resp.text[:200]}")
        try:
            return resp.json()
        except ValueError:
            raise HTTPBackendError(f"{self.base_url}{path}: the answer is not JSON") from None

    @property
    def model(self) -> str:
        """The model name sent to the server (its first listed model unless the URL names one)."""
        if not self._model:
            data = self._request("GET", "/models").get("data") or []
            if not data:
                raise HTTPBackendError(f"{self.base_url}/models lists no model; name one with ?model=")
            self._model = str(data[0]["id"])
        return self._model

    def _one(self, prompt: str, max_new_tokens: int) -> Generation:
        body: dict[str, Any] = {"model": self.model, "max_tokens": max_new_tokens, "temperature": 0}
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
            raise HTTPBackendError(f"{self.base_url}: unexpected answer {str(answer)[:200]}") from None
        tokens = int((answer.get("usage") or {}).get("completion_tokens") or 0)
        return Generation(text=prompt + (text or ""), new_tokens=tokens, truncated=False)

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> list[Generation]:
        """One request per prompt, concurrently; results in prompt order."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        return list(self.pool.map(lambda p: self._one(p, max_new_tokens), prompts))

    def close(self) -> None:
        """Close the connection pool."""
        self.pool.shutdown(wait=False)
        self.client.close()
