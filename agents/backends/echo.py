"""A backend without a model, for benchmarking the runtime around it."""

from __future__ import annotations

from collections.abc import Sequence

from .base import DEFAULT_MAX_NEW_TOKENS, Generation

__all__ = ["ECHO_SUFFIX", "EchoBackend"]

ECHO_SUFFIX = " [echo]"
"""What :class:`EchoBackend` appends to every prompt."""


class EchoBackend:
    """Return every prompt followed by :data:`ECHO_SUFFIX`; generates no tokens.

    A benchmarking aid only: it measures the broker and worker overhead without model time.
    """

    name: str = "echo"

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    ) -> list[Generation]:
        """Echo each prompt with the fixed suffix; ``max_new_tokens`` is ignored."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        return [Generation(text=p + ECHO_SUFFIX, new_tokens=0, truncated=False) for p in prompts]

    def __repr__(self) -> str:
        return "EchoBackend()"
