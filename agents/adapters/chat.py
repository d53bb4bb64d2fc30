"""OpenAI chat shapes (plain dicts, as frameworks build them) to and from baton's chat Structs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ...protocol.chat import ChatMessage, ChatRequest, ChatResult, ToolDef, from_openai, to_openai

__all__ = ["chat_message", "chat_request", "completion_message"]

_FIELDS = ("role", "content", "tool_calls", "tool_call_id", "name")


def _text(content: Any) -> str | None:
    """A message's content as text: a list of parts is its text parts joined."""
    if content is None or isinstance(content, str):
        return content
    return "".join(str(p.get("text", "")) for p in content if isinstance(p, Mapping) and p.get("type") == "text")


def chat_message(message: Mapping[str, Any]) -> ChatMessage:
    """One OpenAI chat message (a dict) as a ``ChatMessage`` (content parts joined as text)."""
    doc = {k: message[k] for k in _FIELDS if message.get(k) is not None}
    if "content" in doc:
        doc["content"] = _text(doc["content"])
    if doc.get("tool_calls"):
        doc["tool_calls"] = [{"id": c["id"], "type": "function", "function": {
            "name": c["function"]["name"], "arguments": c["function"].get("arguments") or "{}"}}
            for c in doc["tool_calls"]]
    if doc.get("role") == "developer":
        doc["role"] = "system"
    return from_openai(doc, ChatMessage)


def chat_request(messages: Sequence[Mapping[str, Any]], *, tools: Sequence[Mapping[str, Any]] = (),
                 tool_choice: Any = None, response_format: Mapping[str, Any] | None = None,
                 max_new_tokens: int | None = None) -> ChatRequest:
    """A ``ChatRequest`` from a chat completion request's parts (OpenAI's JSON shapes)."""
    defs = [from_openai({"type": "function", "function": {k: v for k, v in t["function"].items() if v is not None}},
                        ToolDef) for t in tools]
    choice = tool_choice if tool_choice in ("none", "auto", "required") or isinstance(tool_choice, dict) else None
    return from_openai({k: v for k, v in {
        "messages": [to_openai(chat_message(m)) for m in messages], "tools": [to_openai(d) for d in defs] or None,
        "tool_choice": choice if defs else None, "response_format": dict(response_format) if response_format else None,
        "max_new_tokens": max_new_tokens}.items() if v is not None}, ChatRequest)


def completion_message(result: ChatResult) -> dict[str, Any]:
    """A ``ChatResult``'s message as OpenAI's ``choices[0].message`` (a dict)."""
    msg = result.message
    doc: dict[str, Any] = {"role": "assistant", "content": msg.content}
    if msg.tool_calls:
        doc["tool_calls"] = [to_openai(c) for c in msg.tool_calls]
    return doc
