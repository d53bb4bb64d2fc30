"""A stream read page by page in id order: the one reader behind every list read from a stream
(dead letters across partitions, the audit log)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Generic, TypeVar

from .drive import Op
from .text import as_text

__all__ = ["PAGE", "StreamPages"]

T = TypeVar("T")

PAGE = 100
"""Entries per read unless a reader asks for more."""


class StreamPages(Generic[T]):
    """The entries of stream ``key`` in id order (newest first if ``newest_first``), each made into a
    ``T`` by ``parse(entry id, fields)``; a page of ``page`` entries is read only when the last is used up."""

    def __init__(self, key: str, parse: Callable[[str, Mapping[bytes, bytes]], T], *, newest_first: bool = False,
                 page: int = PAGE) -> None:
        self.key, self.parse, self.newest_first, self.page = key, parse, newest_first, page
        self.rows: deque[T] = deque()
        self.bound: str | None = "+" if newest_first else "-"
        """Where the next page starts; None once the stream is read to its end."""

    def next_op(self) -> Op[T | None]:
        """The next entry (a page read when the last one is used up); None after the last."""
        if not self.rows and (bound := self.bound) is not None:
            key, count = self.key, self.page
            rows: Any = yield ((lambda c: c.xrevrange(key, max=bound, min="-", count=count)) if self.newest_first
                               else (lambda c: c.xrange(key, min=bound, max="+", count=count)))
            self.rows.extend(self.parse(as_text(entry_id), fields) for entry_id, fields in rows)
            self.bound = f"({as_text(rows[-1][0])}" if len(rows) == count else None
        return self.rows.popleft() if self.rows else None
