"""Encoding and decoding of wire messages, with limits checked before any parsing.

The encoder and decoder are built once at import time. ``decode`` raises
``ProtocolError`` with a one-line human reason for every kind of bad input: oversize,
invalid UTF-8, malformed JSON, wrong types, unknown tag, missing fields, values outside the
constraints of ``protocol/fields.py`` (empty or unsafe ids and names, negative hops, a hop limit
below 1), unsupported version.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from .fields import Id
from .limits import MAX_MESSAGE_BYTES
from .messages import PROTOCOL_VERSION, Message

__all__ = ["ProtocolError", "decode", "decode_json", "encode", "peek_ids"]

_encoder = msgspec.json.Encoder()
_decoder: msgspec.json.Decoder[Message] = msgspec.json.Decoder(Message)


class ProtocolError(ValueError):
    """A message that cannot be accepted; ``str(err)`` is the reason, fit for a dead letter."""


def encode(msg: Message) -> bytes:
    """Encode a message as compact JSON bytes."""
    return _encoder.encode(msg)


T = TypeVar("T")


def decode_json(decoder: msgspec.json.Decoder[T], data: bytes | bytearray | memoryview | str, what: str) -> T:
    """``decoder.decode(data)`` with every failure as a one-line ``ProtocolError`` naming ``what``."""
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise ProtocolError(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise ProtocolError(f"malformed JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed JSON: nesting too deep") from None


def decode(data: bytes | bytearray | memoryview | str, *, limit: int = MAX_MESSAGE_BYTES) -> Message:
    """Decode one message, enforcing the size limit and the protocol version first."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogatepass")
    size = len(data)
    if size > limit:
        raise ProtocolError(f"message too large: {size} bytes > limit {limit}")
    if size == 0:
        raise ProtocolError("empty message")
    try:
        bytes(data).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ProtocolError(f"invalid UTF-8 at byte {exc.start}") from None
    msg = decode_json(_decoder, data, "message")
    if msg.v != PROTOCOL_VERSION:
        raise ProtocolError(f"unsupported protocol version {msg.v} (this build speaks {PROTOCOL_VERSION})")
    return msg


class _Ids(msgspec.Struct):
    run_id: str | None = None
    id: str | None = None


_ids_decoder = msgspec.json.Decoder(_Ids)


def peek_ids(data: bytes, *, limit: int = MAX_MESSAGE_BYTES) -> tuple[str | None, str | None]:
    """Best-effort ``(run_id, id)`` of a message that failed to decode; ``None`` for each one that is
    missing or not a valid id (an invalid run id names no run a dead letter could fail)."""
    if len(data) > limit:
        return None, None
    try:
        ids = _ids_decoder.decode(data)
    except (msgspec.DecodeError, RecursionError):
        return None, None
    return _valid_id(ids.run_id), _valid_id(ids.id)


def _valid_id(value: str | None) -> str | None:
    try:
        return msgspec.convert(value, Id) if value is not None else None
    except msgspec.ValidationError:
        return None
