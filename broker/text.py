"""Turning Redis replies (bytes: clients run with ``decode_responses=False``) into text."""

from __future__ import annotations

from typing import Any

__all__ = ["as_text"]


def as_text(value: Any) -> str:
    """``value`` as ``str``: bytes are decoded as UTF-8 (invalid bytes replaced), others ``str()``."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
