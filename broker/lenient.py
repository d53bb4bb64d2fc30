"""Decoding stored values written by hand or by an older writer: keep every field that converts.

Storage is decoded into msgspec Structs at the broker boundary (run records, scratchpad entries,
reviews, waits, threads, schedules' state; a Redis hash by :func:`decode_hash`). A value that does
not fit its Struct whole is read field by field: a field that does not convert keeps its default,
so one bad field never hides the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

from .text import as_text

__all__ = ["convert_lenient", "decode_hash"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def convert_lenient(data: Mapping[str, Any], into: type[T], base: Mapping[str, Any] | None = None) -> T:
    """``data`` (with ``base``, the fields that must be there) converted into ``into`` the way
    ``msgspec.convert(..., strict=False)`` does (``"3"`` to 3); fields that do not convert are
    left at their defaults."""
    good: dict[str, Any] = dict(base or {})
    try:
        return msgspec.convert({**data, **good}, into, strict=False)
    except msgspec.ValidationError as exc:
        log.warning("a stored %s does not convert (%s); reading what converts", into.__name__, exc)
    for name, value in data.items():
        if name in good:
            continue
        try:
            msgspec.convert({**good, name: value}, into, strict=False)
        except msgspec.ValidationError:
            continue
        good[name] = value
    return msgspec.convert(good, into, strict=False)


def decode_hash(raw: Mapping[Any, Any], into: type[T], base: Mapping[str, Any] | None = None) -> T:
    """The Redis hash ``raw`` (bytes or strings) as the Struct ``into``: each field of ``into`` that the
    hash holds, not empty, as text converted leniently (``convert_lenient``); ``base`` gives the fields
    that come from elsewhere (they win over the hash's)."""
    names: tuple[str, ...] = getattr(into, "__struct_fields__")  # noqa: B009 - a Struct type, typed as any type
    given = base or {}
    typed = {name: as_text(v) for k, v in raw.items()
             if (name := as_text(k)) in names and name not in given and v not in (b"", "")}
    return convert_lenient(typed, into, given)
