"""The results streams: where a finished run announces its ``result`` or ``error`` message (one
stream per partition, ``Keys.results``). A :class:`ResultsReader` follows them all from where it
last stopped."""

from __future__ import annotations

from typing import Any

import redis

from ..protocol import Error, Result, decode
from .cluster import is_cluster
from .keys import Keys
from .text import as_text

__all__ = ["ResultsReader"]


class ResultsReader:
    """Reads the results streams of every partition of ``keys`` after ``start`` (``$``: what arrives
    from now on; ``0-0``: from the beginning), one cursor per stream."""

    def __init__(self, client: redis.Redis, keys: Keys, start: str = "$") -> None:
        self.client = client
        self.cursors = {keys.results(p): start for p in range(keys.partitions)}
        self.arrived = 0
        """Entries the last :meth:`read` returned, a malformed one included (0: the wait was quiet)."""

    def read(self, block_ms: int, count: int | None = None) -> list[Result | Error]:
        """The results and errors announced since the last read (waiting up to ``block_ms`` for one),
        oldest first per stream; an entry that does not decode is stepped over."""
        replies = self._xread(block_ms, count)
        self.arrived = 0
        found: list[Result | Error] = []
        for stream, items in replies:
            for entry_id, fields in items:
                self.arrived += 1
                self.cursors[as_text(stream)] = as_text(entry_id)
                data = fields.get(b"msg")
                if data is None:
                    continue
                try:
                    msg = decode(data)
                except ValueError:
                    continue
                if isinstance(msg, Result | Error):
                    found.append(msg)
        return found

    def _xread(self, block_ms: int, count: int | None) -> list[Any]:
        """XREAD the results streams; on a cluster one stream at a time (each in its own slot),
        sharing out the wait."""
        if not is_cluster(self.client) or len(self.cursors) == 1:
            reply: Any = self.client.xread(self.cursors, count=count, block=block_ms)  # type: ignore[arg-type]
            return list(reply or [])
        share = max(1, block_ms // len(self.cursors))
        got: list[Any] = []
        for stream, cursor in self.cursors.items():
            part: Any = self.client.xread({stream: cursor}, count=count, block=None if got else share)
            got += part or []
        return got
