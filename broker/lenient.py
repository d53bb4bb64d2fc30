"""Decoding stored values written by hand or by an older writer: keep every field that converts.

Storage is decoded into msgspec Structs at the broker boundary (run records, scratchpad entries,
reviews). A value that does not fit its Struct whole is read field by field: a field that does
not convert keeps its default, so one bad field never hides the rest.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, TypeVar

import msgspec

__all__ = ["convert_lenient"]

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
