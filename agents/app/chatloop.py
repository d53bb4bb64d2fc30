"""The OpenAI tool-call loop of ``ctx.chat``: call the model; while it asks for tools, run them, append
their results and call again, up to ``max_tool_rounds``. Every model call and tool call is journaled
(``Context.chat_once`` / ``Context.tool_outcome``) and the tool calls are the worker's ``tool_call`` /
``tool_result`` events (the gateway writes them)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from baton.agents.app.context import Context

__all__ = ["as_messages", "chat_loop"]


def as_messages(messages: str | Sequence[Any]) -> list[Any]:
    """``messages`` as ``ChatMessage`` s: a str is one user message; dicts are converted."""
    from baton.protocol.chat import ChatMessage

    if isinstance(messages, str):
        return [ChatMessage(role="user", content=messages)]
    return [m if isinstance(m, ChatMessage) else msgspec.convert(m, ChatMessage) for m in messages]


async def chat_loop(ctx: Context, messages: str | Sequence[Any], tools: Sequence[Any], *, tool_choice: Any,
                    response_format: Mapping[str, Any] | None, max_new_tokens: int | None,
                    stop: Sequence[str] | None, max_tool_rounds: int) -> Any:
    """The final ``ChatResult`` of the conversation (the last one when ``max_tool_rounds`` ran out)."""
    from baton.protocol.chat import ChatMessage, ChatRequest

    convo = as_messages(messages)
    if isinstance(tool_choice, Mapping):
        from baton.protocol.chat import NamedToolChoice

        tool_choice = msgspec.convert(tool_choice, NamedToolChoice)
    rounds = 0
    while True:
        request = ChatRequest(messages=list(convo), tools=list(tools) or None,
                              tool_choice=tool_choice if tools else None,
                              response_format=dict(response_format) if response_format else None,
                              max_new_tokens=max_new_tokens, stop=list(stop) if stop else None)
        result = await ctx.chat_once(request)
        calls = result.message.tool_calls or ()
        if not calls or rounds >= max_tool_rounds:
            return result
        rounds += 1
        convo.append(result.message)
        for call in calls:
            try:
                args = json.loads(call.function.arguments or "{}")
                if not isinstance(args, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                content = f"error: arguments are not a JSON object: {exc}"
            else:
                out = await ctx.tool_outcome(call.function.name, args)
                content = f"error: {out.error}" if out.error else out.output
            convo.append(ChatMessage(role="tool", content=content, tool_call_id=call.id))
