"""Model backends: what turns a batch of prompts into a batch of generations.

``load_backend(name)`` picks one by model name:

- ``"echo"``: :class:`EchoBackend`, no model (benchmarking aid);
- ``http://...`` / ``https://...``: :class:`~baton.agents.backends.http.HTTPBackend`, an
  OpenAI-compatible HTTP server (vLLM, Ollama, llama.cpp, ``baton serve-model``);
- anything else: :class:`HFPipelineBackend`, a Hugging Face ``text-generation`` pipeline on a
  hub id or a local directory (``sshleifer/tiny-gpt2`` falls back to an offline twin when the
  hub cannot be reached).

A backend reports an outage with :class:`ModelUnavailable` and a refused request with
:class:`ModelRejected` (see :mod:`~baton.agents.backends.errors`).

Importing this package does not import torch or transformers; :class:`HFPipelineBackend` is
imported on first use. They come with the ``baton[local]`` extra: without it an in-process model
is a :class:`LocalModelsMissing` error naming the extra (:mod:`~baton.agents.backends.local`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODEL, ECHO_MODEL, Generation, ModelBackend, is_http_model
from .echo import ECHO_SUFFIX, EchoBackend
from .errors import ModelError, ModelRejected, ModelUnavailable
from .local import LOCAL_EXTRA, LocalModelsMissing, require_local
from .resolve import resolve_model
from .twin import build_twin, twin_path

if TYPE_CHECKING:
    from .hf import HFPipelineBackend

__all__ = [
    "DEFAULT_MAX_NEW_TOKENS",
    "DEFAULT_MODEL",
    "ECHO_MODEL",
    "ECHO_SUFFIX",
    "EchoBackend",
    "Generation",
    "HFPipelineBackend",
    "LOCAL_EXTRA",
    "LocalModelsMissing",
    "ModelBackend",
    "ModelError",
    "ModelRejected",
    "ModelUnavailable",
    "build_twin",
    "load_backend",
    "resolve_model",
    "twin_path",
]


def load_backend(
    model: str, *, threads: int = 1, max_positions: int | None = None, flush_tokens: int = 16, flush_ms: float = 50,
) -> ModelBackend:
    """Create the backend for ``model``.

    Args:
        model: ``"echo"``, an ``http(s)://`` server URL, a Hugging Face hub id, or a local model directory.
        threads: torch threads for this process (Hugging Face backend only).
        max_positions: context size cap (Hugging Face backend only; default: the model's).
        flush_tokens, flush_ms: how often a streamed prompt's text is passed to ``on_tokens``
            (Hugging Face backend only; the others pass each prompt's text in one chunk).

    Raises:
        ValueError: for an ``http(s)://`` URL with a bad ``api`` parameter.
        LocalModelsMissing: for an in-process model on an install without ``baton[local]``.
    """
    if model == ECHO_MODEL:
        return EchoBackend()
    if is_http_model(model):
        from .http import HTTPBackend  # the URL is the server's base URL, e.g. http://host:8000/v1

        return HTTPBackend(model)
    require_local(model)
    from .hf import HFPipelineBackend

    return HFPipelineBackend(model, threads=threads, max_positions=max_positions, flush_tokens=flush_tokens,
                             flush_ms=flush_ms)


def __getattr__(name: str) -> Any:
    if name == "HFPipelineBackend":
        from .hf import HFPipelineBackend

        return HFPipelineBackend
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
