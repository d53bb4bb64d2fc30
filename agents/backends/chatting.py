"""Chat on text models: the chat template, stop sequences, and chat results from generations.

A text model (the Hugging Face backend, the offline twin, echo) answers a chat request by
generating from the conversation rendered as one prompt with :func:`render_chat`, baton's simple
chat template:

- a tokenizer that has its own chat template renders the messages with it;
- otherwise the prompt is the messages' texts joined by newlines, in order: a message's
  ``content``; an assistant's tool calls as ``name(arguments)`` lines; a tool message as its
  content. No role markers are added, so a conversation of one user message is exactly that
  message's text, and ``ctx.chat`` on one user message answers as ``ctx.generate`` on the same
  text (the seed notebook's prompts work unchanged).

Text models cannot choose tools: their answers never carry ``tool_calls``. Stop sequences are
applied to the generated text (:func:`cut_at_stop`); the tokens generated past a stop sequence
are still counted. :class:`StopFilter` holds streamed text back until it cannot be the start of a
stop sequence, so the chunks passed on join to the cut continuation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ...protocol.chat import ChatMessage, ChatRequest, ChatResult, FinishReason

__all__ = ["OnTokens", "StopFilter", "chat_result", "cut_at_stop", "render_chat"]

OnTokens = Callable[[int, str], None]


def render_chat(messages: Sequence[ChatMessage], tokenizer: Any = None) -> str:
    """The prompt for ``messages`` (see the module docstring for the template)."""
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        plain = [{"role": m.role, "content": m.content or ""} for m in messages]
        rendered: str = tokenizer.apply_chat_template(plain, tokenize=False, add_generation_prompt=True)
        return rendered
    lines: list[str] = []
    for m in messages:
        if m.content:
            lines.append(m.content)
        for call in m.tool_calls or ():
            lines.append(f"{call.function.name}({call.function.arguments})")
    return "\n".join(lines)


def cut_at_stop(text: str, stop: Sequence[str] | None) -> tuple[str, bool]:
    """``text`` up to the first of the ``stop`` strings (not included), and whether one was found."""
    if not stop:
        return text, False
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def chat_result(continuation: str, *, request: ChatRequest, max_new_tokens: int, prompt_tokens: int = 0,
                new_tokens: int = 0) -> ChatResult:
    """A text model's answer to ``request``: the continuation cut at a stop sequence, as an assistant message."""
    text, stopped = cut_at_stop(continuation, request.stop)
    finish: FinishReason = "length" if not stopped and max_new_tokens > 0 and new_tokens >= max_new_tokens else "stop"
    return ChatResult(message=ChatMessage(role="assistant", content=text), finish_reason=finish,
                      prompt_tokens=prompt_tokens, completion_tokens=new_tokens)


class StopFilter:
    """An ``on_tokens`` wrapper that passes each prompt's text on only up to its stop sequence.

    Text that could be the beginning of a stop sequence is held back until the next chunk shows
    it is not; call :meth:`close` after the generation to pass on what is left.
    """

    def __init__(self, on_tokens: OnTokens, stops: Sequence[Sequence[str] | None]) -> None:
        self.on_tokens = on_tokens
        self.stops = [[s for s in (stop or ()) if s] for stop in stops]
        self.seen = [""] * len(stops)
        self.sent = [0] * len(stops)
        self.done = [False] * len(stops)

    def __call__(self, index: int, text: str) -> None:
        stops = self.stops[index] if 0 <= index < len(self.stops) else []
        if not stops:
            self.on_tokens(index, text)
            return
        if self.done[index]:
            return
        self.seen[index] += text
        seen = self.seen[index]
        cut, stopped = cut_at_stop(seen, stops)
        if stopped:
            self.done[index] = True
            safe = len(cut)
        else:
            safe = len(seen) - _partial_stop(seen, stops)
        self._send(index, safe)

    def flush(self) -> None:
        """Forward a streamer's end-of-round signal to the wrapped callback, when it takes one."""
        flush = getattr(self.on_tokens, "flush", None)
        if flush is not None:
            flush()

    def close(self) -> None:
        """Pass on the held-back text of every prompt that ended without a stop sequence."""
        for index, seen in enumerate(self.seen):
            if not self.done[index]:
                self._send(index, len(seen))

    def _send(self, index: int, upto: int) -> None:
        if upto > self.sent[index]:
            chunk = self.seen[index][self.sent[index]:upto]
            self.sent[index] = upto
            self.on_tokens(index, chunk)


def _partial_stop(text: str, stops: Sequence[str]) -> int:
    """The length of the longest end of ``text`` that begins one of ``stops`` (0 for none)."""
    return max((k for s in stops for k in range(1, len(s)) if text.endswith(s[:k])), default=0)
