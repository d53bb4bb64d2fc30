"""OpenAI's streamed answer format: ``data: {chunk}`` server-sent events, then ``data: [DONE]``.

``/v1/completions`` chunks are ``text_completion`` objects whose choices carry ``text``;
``/v1/chat/completions`` chunks are ``chat.completion.chunk`` objects whose choices carry a
``delta`` (the first one ``{"role": "assistant", "content": ""}``). Each choice ends with a chunk
that has its ``finish_reason`` (``"length"``, ``"stop"`` or ``"tool_calls"``, after one chunk whose
``delta.tool_calls`` holds the calls); with ``stream_options.include_usage``
a last chunk has no choices and the ``usage`` block.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DONE", "Row", "StreamShape", "sse", "usage"]

DONE = "data: [DONE]\n\n"
"""The event that ends an OpenAI stream."""


@dataclass(frozen=True, slots=True)
class Row:
    """One choice's result: the continuation, token counts and why it stopped."""

    text: str
    prompt_tokens: int
    new_tokens: int
    finish_reason: str
    tool_calls: list[dict[str, Any]] | None = None
    """A chat answer's tool calls, in OpenAI's shape."""


def sse(payload: dict[str, Any]) -> str:
    """One server-sent event carrying ``payload`` as JSON."""
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


def usage(rows: Sequence[Row]) -> dict[str, int]:
    """The ``usage`` block for ``rows``."""
    p, c = sum(r.prompt_tokens for r in rows), sum(r.new_tokens for r in rows)
    return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}


class StreamShape:
    """Builds the chunks of one streamed answer (one id and creation time for all of them)."""

    def __init__(self, kind: Literal["text_completion", "chat.completion"], id: str, model: str, *,
                 include_usage: bool = False) -> None:
        self.chat = kind == "chat.completion"
        self.id = id
        self.model = model
        self.include_usage = include_usage
        self.created = int(time.time())

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return {"id": self.id, "object": kind, "created": self.created, "model": self.model, "choices": choices}

    def start(self) -> list[str]:
        """Events before the first text: the assistant role, for chat."""
        if not self.chat:
            return []
        return [sse(self._chunk([{"index": 0, "delta": {"role": "assistant", "content": ""},
                                  "logprobs": None, "finish_reason": None}]))]

    def chunk(self, index: int, text: str) -> str:
        """The event for new ``text`` of choice ``index``."""
        return sse(self._chunk([self._choice(index, text, None)]))

    def finish(self, index: int, row: Row) -> str:
        """The event that ends choice ``index`` (after one carrying its tool calls, if it has any)."""
        end = sse(self._chunk([self._choice(index, None, row.finish_reason)]))
        if not (self.chat and row.tool_calls):
            return end
        calls = [{"index": i, **call} for i, call in enumerate(row.tool_calls)]
        delta = {"index": index, "delta": {"tool_calls": calls}, "logprobs": None, "finish_reason": None}
        return sse(self._chunk([delta])) + end

    def usage(self, rows: Sequence[Row]) -> str:
        """The usage event (``stream_options.include_usage``)."""
        return sse(self._chunk([]) | {"usage": usage(rows)})

    def _choice(self, index: int, text: str | None, finish: str | None) -> dict[str, Any]:
        if self.chat:
            return {"index": index, "delta": {"content": text} if text is not None else {},
                    "logprobs": None, "finish_reason": finish}
        return {"index": index, "text": text or "", "logprobs": None, "finish_reason": finish}
