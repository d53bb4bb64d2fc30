"""A worker's call journal as its handlers' contexts use it (over ``broker/journal.py``).

One ``CallJournal`` per worker process: a hop's records are read once (at its first journaled
call), and the results of calls that concurrent handlers make in the same turn of the event loop
are written in one round trip, which every one of them waits for before going on.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgspec

from ...broker import Redis
from ...broker.journal import CallKind, HopJournal, JournalWrite, Recorded, read_journals, write_journal
from ...broker.keys import Keys

__all__ = ["CallJournal", "HopCalls", "fingerprint"]

_encode = msgspec.json.Encoder().encode


def fingerprint(kind: CallKind, *inputs: Any) -> str:
    """A short digest of a call's kind and inputs (msgspec JSON): a record answers only the same call."""
    h = hashlib.blake2b(digest_size=12)
    h.update(kind.encode())
    for value in inputs:
        h.update(b"\x00")
        h.update(_encode(value))
    return h.hexdigest()


class CallJournal:
    """Reads and writes of the journal for every handler of one worker (``enabled=False``: a no-op)."""

    def __init__(self, client: Redis | None, keys: Keys, *, enabled: bool = True) -> None:
        self.client = client
        self.keys = keys
        self.enabled = enabled and client is not None
        self._pending: list[JournalWrite] = []
        self._flush: asyncio.Task[None] | None = None
        self._reads: list[tuple[tuple[str, str, str], asyncio.Future[HopJournal]]] = []
        self._reading: asyncio.Task[None] | None = None
        self.writes = 0
        self.round_trips = 0

    def read(self, run_id: str, msg_id: str, hop: str) -> asyncio.Future[HopJournal]:
        """The records a hop finds (its own, and its fork source's), read together with those of the
        other hops asking in the same turn of the loop (one round trip)."""
        loop = asyncio.get_running_loop()
        found: asyncio.Future[HopJournal] = loop.create_future()
        if not self.enabled:
            found.set_result(HopJournal({}, {}))
            return found
        self._reads.append(((run_id, msg_id, hop), found))
        if self._reading is None or self._reading.done():
            self._reading = loop.create_task(self._read_pending())
        return found

    async def _read_pending(self) -> None:
        await asyncio.sleep(0)  # let the handlers starting in this turn ask too
        reads, self._reads = self._reads, []
        self._reading = None
        assert self.client is not None
        try:
            results = read_journals(self.client, self.keys, [hop for hop, _ in reads])
        except Exception as exc:  # a Redis outage: every waiting handler gets it (the driver rides it out)
            for _, fut in reads:
                if not fut.done():
                    fut.set_exception(exc)
            return
        self.round_trips += 1
        for (_, fut), result in zip(reads, results, strict=True):
            if not fut.done():
                fut.set_result(result)

    async def write(self, w: JournalWrite) -> None:
        """Record ``w``; returns once it is in Redis (shared with the writes of the same loop turn)."""
        if not self.enabled:
            return
        self._pending.append(w)
        flush = self._flush
        if flush is None or flush.done():
            flush = self._flush = asyncio.get_running_loop().create_task(self._write_pending())
        await asyncio.shield(flush)

    async def _write_pending(self) -> None:
        await asyncio.sleep(0)  # let the handlers running in this turn add their records
        writes, self._pending = self._pending, []
        self._flush = None
        assert self.client is not None
        if not writes:
            return
        write_journal(self.client, self.keys, writes)
        self.writes += len(writes)
        self.round_trips += 1


@dataclass(slots=True)
class HopCalls:
    """One hop's journaled calls: the sequence counter and what (re)delivery found."""

    run_id: str
    msg_id: str
    hop: str
    journal: CallJournal
    seq: int = 0
    found: HopJournal | None = None
    reading: asyncio.Future[HopJournal] | None = None
    diverged: bool = False
    replayed: int = 0
    made: int = 0
    _reused: Mapping[int, Recorded] = field(default_factory=dict)

    def prefetch(self) -> None:
        """Start reading what the journal holds for this hop (with the other hops starting now)."""
        if self.reading is None and self.journal.enabled:
            self.reading = self.journal.read(self.run_id, self.msg_id, self.hop)

    async def recorded(self, kind: CallKind, fp: str) -> Recorded | None:
        """The record answering call number ``self.seq`` (when it is the same call), else None."""
        if not self.journal.enabled or self.diverged:
            return None
        if self.found is None:
            self.prefetch()
            assert self.reading is not None
            self.found = await self.reading
        for source in (self.found.own, self.found.reused):
            rec = source.get(self.seq)
            if rec is not None and rec.kind == kind and rec.fp == fp:
                return rec
        if self.seq in self.found.own or self.seq in self.found.reused:
            self.diverged = True  # the handler now calls something else here: the rest runs again
        return None

    async def record(self, kind: CallKind, fp: str, value: bytes) -> None:
        """Record the result of call number ``self.seq``."""
        rec = Recorded(kind=kind, fp=fp, value=msgspec.Raw(value))
        await self.journal.write(JournalWrite(self.run_id, self.msg_id, self.hop, self.seq, rec))
