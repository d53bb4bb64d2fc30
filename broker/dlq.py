"""The dead-letter streams: list, show, replay and purge dead letters.

A dead letter keeps the original entry, the reason, the attempt count and the role. Replaying
re-publishes the original message on the stream it came from and removes the dead letter in one
transaction; the run record goes back to ``queued``. The dead-letter commit used an idempotency
marker of its own (``dead:<stream>:<entry>``), not the message's, so a replayed message is
handled like a new one.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import redis

from baton.broker.keys import Keys
from baton.broker.streams import entry_id_key
from baton.broker.text import as_text
from baton.protocol import MAX_MESSAGE_BYTES, DeadLetter, ProtocolError, decode

__all__ = [
    "DEAD_LETTER_LIMIT", "DeadEntry", "ReplayError", "find_dead", "is_entry_id", "list_dead", "purge_dead",
    "replay_dead",
]


_ENTRY_ID = re.compile(r"\d+-\d+")


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a full stream entry id (``ms-seq``)."""
    return _ENTRY_ID.fullmatch(text) is not None


class ReplayError(ValueError):
    """A dead letter that cannot be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead letter: where it is stored and what it says."""

    key: str
    id: str
    letter: DeadLetter


DEAD_LETTER_LIMIT = 64 * MAX_MESSAGE_BYTES
"""Dead letters keep oversize originals whole, so they are read with a larger limit."""


def _parse(key: str, entry_id: Any, fields: dict[bytes, bytes]) -> DeadEntry | None:
    try:
        msg = decode(fields.get(b"msg", b""), limit=DEAD_LETTER_LIMIT)
    except ProtocolError:
        return None
    return DeadEntry(key, as_text(entry_id), msg) if isinstance(msg, DeadLetter) else None


def list_dead(client: redis.Redis, keys: Keys, *, role: str | None = None, limit: int = 100) -> list[DeadEntry]:
    """Dead letters of every partition, oldest first (at most ``limit``; 0 = all)."""
    found: list[DeadEntry] = []
    for p in range(keys.partitions):
        key = keys.dead(p)
        rows: Any = client.xrange(key)
        for entry_id, fields in rows:
            d = _parse(key, entry_id, fields)
            if d is not None and (role is None or d.letter.role == role):
                found.append(d)
    found.sort(key=lambda d: entry_id_key(d.id))
    return found[:limit] if limit > 0 else found


def find_dead(client: redis.Redis, keys: Keys, entry_id: str) -> DeadEntry | None:
    """The dead letter with stream entry id ``entry_id``, in any partition (None if not an id)."""
    if not is_entry_id(entry_id):
        return None
    for p in range(keys.partitions):
        key = keys.dead(p)
        rows: Any = client.xrange(key, min=entry_id, max=entry_id)
        for eid, fields in rows:
            return _parse(key, eid, fields)
    return None


def replay_dead(client: redis.Redis, keys: Keys, dead: DeadEntry) -> str:
    """Re-publish a dead letter's original message where it came from; return the new entry id."""
    letter = dead.letter
    if not letter.original:
        raise ReplayError(f"dead letter {dead.id} has no original message to replay")
    if keys.parse_stream(letter.stream) is None:
        raise ReplayError(f"dead letter {dead.id} came from {letter.stream!r}, not a task stream of this deployment")
    pipe = client.pipeline(transaction=True)
    pipe.xadd(letter.stream, {"msg": letter.original.encode("utf-8")})
    pipe.xdel(dead.key, dead.id)
    if letter.run_id and client.exists(keys.run(letter.run_id)):
        pipe.hset(keys.run(letter.run_id), mapping={"status": "queued", "role": letter.role})
        pipe.hdel(keys.run(letter.run_id), "error")
    new_id = pipe.execute()[0]
    return as_text(new_id)


def purge_dead(client: redis.Redis, keys: Keys, entry_ids: Iterable[str] | None = None) -> int:
    """Delete the given dead letters (``None``: all of them); return how many were deleted."""
    deleted = 0
    ids = list(entry_ids) if entry_ids is not None else None
    for p in range(keys.partitions):
        key = keys.dead(p)
        if ids is None:
            deleted += int(client.xlen(key))
            client.delete(key)
        elif ids:
            deleted += int(client.xdel(key, *ids))
    return deleted
