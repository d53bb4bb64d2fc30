"""Chat messages, tool definitions and tool calls, in OpenAI's exact JSON shape.

These Structs are what a chat model call takes and returns inside baton (``ModelBackend.chat``,
``Context.chat``, the tool-calling loop, the call journal), and they encode to, and decode from,
the bodies of OpenAI's ``/v1/chat/completions``: ``encode_chat`` of a :class:`ChatMessage` is
an element of ``messages``, of a :class:`ToolDef` an element of ``tools``, and a response's
``choices[i].message`` decodes to a :class:`ChatMessage` (fields baton does not use, such as
``refusal`` or ``annotations``, are ignored). Fields left at their default are omitted when
encoding, as OpenAI's clients do.

Two fields are free JSON by nature, a tool's ``parameters`` (a JSON Schema) and
``response_format``; they are typed ``dict[str, Any]``. Everything else is constrained here, and
every decoder is built once, at import time.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import Meta

from .codec import ProtocolError, decode_json

__all__ = [
    "ChatMessage",
    "ChatRequest",
    "ChatResult",
    "FinishReason",
    "FunctionCall",
    "FunctionDef",
    "NamedFunction",
    "NamedToolChoice",
    "Role",
    "ToolCall",
    "ToolChoice",
    "ToolDef",
    "decode_chat",
    "encode_chat",
    "from_openai",
    "to_openai",
    "tool_calls_of",
]

Role = Literal["system", "developer", "user", "assistant", "tool"]
"""Who a message is from; ``tool`` messages answer a tool call (``tool_call_id``)."""

FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "function_call"]
"""Why the model stopped: natural end or a stop sequence, the token limit, or to call tools."""

FunctionName = Annotated[str, Meta(min_length=1, max_length=128,
                                   description="A function (tool) name as the model sees it.")]
MaxNewTokens = Annotated[int, Meta(ge=0, le=1_000_000, description="New tokens per answer at most.")]
TokenCount = Annotated[int, Meta(ge=0)]
StopSequences = Annotated[Sequence[str], Meta(max_length=16, description="Text that ends the answer.")]


class FunctionCall(msgspec.Struct, frozen=True, kw_only=True):
    """The function a model asks to call: its name and its arguments as a JSON object text."""

    name: FunctionName
    arguments: str = "{}"


class ToolCall(msgspec.Struct, frozen=True, kw_only=True):
    """One tool call of an assistant message (OpenAI's ``tool_calls[i]``)."""

    id: Annotated[str, Meta(min_length=1, max_length=256)]
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessage(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chat message (OpenAI's ``messages[i]``, and a response's ``choices[i].message``).

    ``content`` is ``None`` for an assistant message that only calls tools; ``tool_calls`` are
    the calls it asks for; a ``tool`` message answers the call ``tool_call_id``. ``name`` is an
    optional participant name.
    """

    role: Role
    content: str | None = None
    tool_calls: Sequence[ToolCall] | None = None
    tool_call_id: str | None = None
    name: str | None = None


class FunctionDef(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A function the model may call: name, what it does, and its arguments' JSON Schema."""

    name: FunctionName
    description: str = ""
    parameters: dict[str, Any] = msgspec.field(default_factory=lambda: {"type": "object", "properties": {}})
    strict: bool | None = None


class ToolDef(msgspec.Struct, frozen=True, kw_only=True):
    """One element of a request's ``tools``."""

    type: Literal["function"] = "function"
    function: FunctionDef


class NamedFunction(msgspec.Struct, frozen=True, kw_only=True):
    """``{"name": ...}`` inside a named tool choice."""

    name: FunctionName


class NamedToolChoice(msgspec.Struct, frozen=True, kw_only=True):
    """``tool_choice`` forcing one function: ``{"type": "function", "function": {"name": ...}}``."""

    type: Literal["function"] = "function"
    function: NamedFunction


ToolChoice = Literal["none", "auto", "required"] | NamedToolChoice
"""Whether the model may, must not or must call a tool, or which one it must call."""


class ChatRequest(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One chat model call: the conversation, the tools on offer and how to answer.

    ``max_new_tokens`` ``None`` means the backend's default; ``stop`` ends the answer at the
    first of these strings (not included). ``response_format`` is passed through as given
    (e.g. ``{"type": "json_object"}``).
    """

    messages: Annotated[Sequence[ChatMessage], Meta(min_length=1)]
    tools: Sequence[ToolDef] | None = None
    tool_choice: ToolChoice | None = None
    response_format: dict[str, Any] | None = None
    max_new_tokens: MaxNewTokens | None = None
    stop: StopSequences | None = None


class ChatResult(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A chat model's answer: the assistant message (text, or tool calls) and token counts."""

    message: ChatMessage
    finish_reason: FinishReason = "stop"
    prompt_tokens: TokenCount = 0
    completion_tokens: TokenCount = 0


def tool_calls_of(result: ChatResult) -> Sequence[ToolCall]:
    """The tool calls the answer asks for (empty when it is a final answer)."""
    return result.message.tool_calls or ()


_encoder = msgspec.json.Encoder()
_decoders: dict[type[Any], msgspec.json.Decoder[Any]] = {
    cls: msgspec.json.Decoder(cls)
    for cls in (ChatMessage, ChatRequest, ChatResult, ToolCall, ToolDef, FunctionCall)
}

T = TypeVar("T", ChatMessage, ChatRequest, ChatResult, ToolCall, ToolDef, FunctionCall)


def encode_chat(value: ChatMessage | ChatRequest | ChatResult | ToolCall | ToolDef | FunctionCall) -> bytes:
    """Compact JSON of a chat Struct, in OpenAI's shape (defaults omitted)."""
    return _encoder.encode(value)


def decode_chat(data: bytes | bytearray | memoryview | str, cls: type[T]) -> T:
    """Decode JSON as ``cls``; bad input raises :class:`~baton.protocol.codec.ProtocolError` (one line)."""
    decoded: T = decode_json(_decoders[cls], data, cls.__name__)
    return decoded


def to_openai(value: ChatMessage | ChatRequest | ChatResult | ToolCall | ToolDef | FunctionCall) -> Any:
    """A chat Struct as plain JSON-able values in OpenAI's shape (defaults omitted)."""
    return msgspec.to_builtins(value)


def from_openai(value: Any, cls: type[T]) -> T:
    """Plain values (e.g. part of a parsed OpenAI response) as ``cls``; bad input raises ``ProtocolError``."""
    try:
        converted: T = msgspec.convert(value, cls)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid {cls.__name__}: {exc}") from None
    return converted
