"""A backend without a model, for benchmarking the runtime and for fault-injection tests.

Two test knobs, read from the environment when the backend is created (both off by default):

- ``BATON_ECHO_DELAY_S``: seconds to sleep per ``generate`` call (a slow but alive model).
- ``BATON_FAULT_INJECTION=1``: honour fault markers in prompts, so a test can make a real worker
  process misbehave on one chosen message without mocks:

  - ``[[fault:crash]]``: the process exits at once with code 86 (``os._exit``, no cleanup), as a
    worker killed mid-task would; a message carrying it is a poison message.
  - ``[[fault:raise:N]]``: the first ``N`` calls of this process on that prompt raise
    ``RuntimeError`` (a transient model error), later calls succeed.
  - ``[[fault:sleep:S]]``: sleep ``S`` seconds before answering (one slow task).

Without ``BATON_FAULT_INJECTION=1`` markers are plain text and echoed like any other.

``chat`` answers each request with the text of its last user message followed by
:data:`ECHO_SUFFIX` (fault markers in that message act as in a prompt); it never calls tools.
"""

from __future__ import annotations

import os
import re
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence

from ...protocol.chat import ChatRequest, ChatResult
from .base import DEFAULT_MAX_NEW_TOKENS, Generation
from .chatting import chat_result, cut_at_stop

__all__ = ["CRASH_EXIT_CODE", "ECHO_SUFFIX", "EchoBackend"]

ECHO_SUFFIX = " [echo]"
"""What :class:`EchoBackend` appends to every prompt."""

CRASH_EXIT_CODE = 86
"""Exit code of a process crashed by the ``[[fault:crash]]`` marker."""

_MARKER = re.compile(r"\[\[fault:(crash|raise:(\d+)|sleep:([0-9.]+))\]\]")


class EchoBackend:
    """Return every prompt followed by :data:`ECHO_SUFFIX`; generates no tokens.

    A benchmarking aid and a deterministic fast model for crash tests; it never stands in for
    the real model where outputs matter.
    """

    name: str = "echo"

    def __init__(
        self,
        *,
        delay_s: float | None = None,
        fault_injection: bool | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        env = os.environ if env is None else env
        self.delay_s = float(env.get("BATON_ECHO_DELAY_S") or 0) if delay_s is None else delay_s
        if fault_injection is None:
            fault_injection = env.get("BATON_FAULT_INJECTION", "").lower() in {"1", "true", "yes"}
        self.fault_injection = fault_injection
        self._raised: Counter[str] = Counter()

    def generate(
        self, prompts: Sequence[str], *, max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
        on_tokens: Callable[[int, str], None] | None = None, stop: Sequence[str] | None = None,
    ) -> list[Generation]:
        """Echo each prompt with the fixed suffix (passed to ``on_tokens`` as one chunk per prompt),
        cut at a ``stop`` string found in the suffix; ``max_new_tokens`` is ignored."""
        if max_new_tokens < 0:
            raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
        self._before(prompts)
        tail = cut_at_stop(ECHO_SUFFIX, stop)[0]
        if on_tokens is not None and tail:
            for index in range(len(prompts)):
                on_tokens(index, tail)
        return [Generation(text=p + tail, new_tokens=0, truncated=False) for p in prompts]

    def chat(
        self, requests: Sequence[ChatRequest], *, on_tokens: Callable[[int, str], None] | None = None,
    ) -> list[ChatResult]:
        """Answer each request with its last user message's text and the fixed suffix (cut at ``stop``)."""
        texts = [next((m.content or "" for m in reversed(r.messages) if m.role == "user"), "") for r in requests]
        self._before(texts)
        results = [chat_result(text + ECHO_SUFFIX, request=r, max_new_tokens=r.max_new_tokens or 0)
                   for text, r in zip(texts, requests, strict=True)]
        if on_tokens is not None:
            for index, result in enumerate(results):
                if result.message.content:
                    on_tokens(index, result.message.content)
        return results

    def _before(self, prompts: Sequence[str]) -> None:
        """The configured delay, then the fault markers of ``prompts``."""
        if self.delay_s > 0:
            time.sleep(self.delay_s)
        if self.fault_injection:
            for prompt in prompts:
                self._inject(prompt)

    def _inject(self, prompt: str) -> None:
        for m in _MARKER.finditer(prompt):
            if m.group(1) == "crash":
                os._exit(CRASH_EXIT_CODE)
            if m.group(2) is not None and self._raised[prompt] < int(m.group(2)):
                self._raised[prompt] += 1
                raise RuntimeError(f"injected transient model error {self._raised[prompt]}/{m.group(2)}")
            if m.group(3) is not None:
                time.sleep(float(m.group(3)))

    def __repr__(self) -> str:
        return f"EchoBackend(delay_s={self.delay_s}, fault_injection={self.fault_injection})"
