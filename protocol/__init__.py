"""Baton's wire format: msgspec Structs, codecs and limits. No I/O lives here."""

from baton.protocol.codec import ProtocolError, decode, encode, peek_ids, schema
from baton.protocol.fields import KEY_SAFE_PATTERN, Id, Name
from baton.protocol.limits import (
    DEAD_LETTER_MAX_BYTES,
    MAX_HOPS,
    MAX_ID_LENGTH,
    MAX_MESSAGE_BYTES,
    MAX_NAME_LENGTH,
    MAX_PARTS,
    MAX_TOOL_TIMEOUT_S,
)
from baton.protocol.messages import (
    DEFAULT_WORKFLOW,
    PROTOCOL_VERSION,
    DeadLetter,
    Error,
    Hop,
    Message,
    Result,
    ReviewDecision,
    Task,
    ToolCall,
    ToolResult,
    new_id,
    now,
)

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "DEFAULT_WORKFLOW",
    "KEY_SAFE_PATTERN",
    "MAX_HOPS",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_PARTS",
    "MAX_TOOL_TIMEOUT_S",
    "PROTOCOL_VERSION",
    "DeadLetter",
    "Error",
    "Hop",
    "Id",
    "Message",
    "Name",
    "ProtocolError",
    "Result",
    "ReviewDecision",
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
