"""Baton's wire format: msgspec Structs, codecs and limits. No I/O lives here."""

from baton.protocol.codec import ProtocolError, decode, encode, peek_ids, schema
from baton.protocol.limits import DEAD_LETTER_MAX_BYTES, MAX_HOPS, MAX_MESSAGE_BYTES
from baton.protocol.messages import (
    PROTOCOL_VERSION,
    DeadLetter,
    Error,
    Hop,
    Message,
    Result,
    Task,
    ToolCall,
    ToolResult,
    new_id,
    now,
)

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "MAX_HOPS",
    "MAX_MESSAGE_BYTES",
    "PROTOCOL_VERSION",
    "DeadLetter",
    "Error",
    "Hop",
    "Message",
    "ProtocolError",
    "Result",
    "Task",
    "ToolCall",
    "ToolResult",
    "decode",
    "encode",
    "new_id",
    "now",
    "peek_ids",
    "schema",
]
