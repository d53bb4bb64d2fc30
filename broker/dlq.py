"""The dead-letter streams: list, show, replay and purge dead letters.

A dead letter keeps the original entry, the reason, the attempt count and the role. Replaying
re-publishes the original message on the stream it came from and removes the dead letter in one
transaction; the run record goes back to ``queued``. The dead-letter commit used an idempotency
marker of its own (``dead:<stream>:<entry>``), not the message's, so a replayed message is
handled like a new one.

``list_dead`` is the one reader of dead letters (CLI, monitor, dashboard, traces) and
``parse_dead`` the one rule by which each is decoded: with ``DEAD_LETTER_LIMIT``, larger than the
1 MiB of live messages, so a dead letter of an oversize message is still shown with its reason.
"""

from __future__ import annotations

import functools
import heapq
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import redis

from ..protocol import DEAD_LETTER_MAX_BYTES, DeadLetter, ProtocolError, RunStatus, decode
from .drive import Op, blocking
from .keys import Keys
from .pages import StreamPages
from .streams import entry_id_key
from .text import as_text

__all__ = [
    "DEAD_LETTER_LIMIT", "UNREADABLE_PREVIEW", "DeadEntry", "ReplayError", "count_dead", "find_dead", "is_entry_id",
    "list_dead", "list_dead_op", "parse_dead", "purge_dead", "replay_dead",
]


_ENTRY_ID = re.compile(r"\d+-\d+")

DEAD_LETTER_LIMIT = DEAD_LETTER_MAX_BYTES
"""Dead letters keep oversize originals whole, so they are read with this larger limit."""

UNREADABLE_PREVIEW = 2000
"""How many bytes of an unreadable dead-letter entry are kept in its placeholder letter."""


def is_entry_id(text: str) -> bool:
    """Whether ``text`` is a full stream entry id (``ms-seq``)."""
    return _ENTRY_ID.fullmatch(text) is not None


class ReplayError(ValueError):
    """A dead letter that cannot be replayed; the message says why."""


@dataclass(frozen=True, slots=True)
class DeadEntry:
    """One dead letter: where it is stored and what it says.

    ``readable`` is False for an entry that is not a decodable dead letter (over
    ``DEAD_LETTER_LIMIT``, or not one at all): its ``letter`` is then a placeholder whose reason
    says why and whose ``original`` is the entry's first ``UNREADABLE_PREVIEW`` bytes.
    """

    key: str
    id: str
    letter: DeadLetter
    readable: bool = True


def parse_dead(key: str, entry_id: Any, raw: bytes | None) -> DeadEntry:
    """The one rule by which a dead-letter entry is read: decode it with ``DEAD_LETTER_LIMIT``.

    Never fails and never drops an entry: what cannot be read becomes an unreadable placeholder.
    """
    eid = as_text(entry_id)
    try:
        msg = decode(raw or b"", limit=DEAD_LETTER_LIMIT)
    except ProtocolError as exc:
        problem = str(exc)
    else:
        if isinstance(msg, DeadLetter):
            return DeadEntry(key, eid, msg)
        problem = f"a {type(msg).__name__} message, not a dead letter"
    placeholder = DeadLetter(
        run_id="", role="", reason=f"unreadable dead letter: {problem}",
        original=bytes(raw or b"")[:UNREADABLE_PREVIEW].decode("utf-8", "replace"),
        created_at=entry_id_key(eid)[0] / 1000,
    )
    return DeadEntry(key, eid, placeholder, readable=False)


def _parse_row(key: str, entry_id: str, fields: Mapping[bytes, bytes]) -> DeadEntry:
    return parse_dead(key, entry_id, fields.get(b"msg"))


def list_dead_op(
    keys: Keys, *, role: str | None = None, run_id: str | None = None, limit: int = 100, newest_first: bool = False,
) -> Op[list[DeadEntry]]:
    """Dead letters of every partition in id order (oldest first unless ``newest_first``).

    At most ``limit`` (0 = all) of those of ``role`` and ``run_id`` (when given). Every reader of
    dead letters (the CLI, the monitor, the dashboard, traces) goes through here. The partitions
    are merged as they are read: a page is read only when its partition's next letter is wanted.
    """
    def order(d: DeadEntry) -> tuple[int, int]:
        ms, seq = entry_id_key(d.id)
        return (-ms, -seq) if newest_first else (ms, seq)

    parts = [StreamPages(key, functools.partial(_parse_row, key), newest_first=newest_first)
             for key in (keys.dead(p) for p in range(keys.partitions))]
    heap: list[tuple[tuple[int, int], int, DeadEntry]] = []
    for i, part in enumerate(parts):
        if (first := (yield from part.next_op())) is not None:
            heapq.heappush(heap, (order(first), i, first))
    out: list[DeadEntry] = []
    while heap:
        _, i, d = heapq.heappop(heap)
        if (role is None or d.letter.role == role) and (run_id is None or d.letter.run_id == run_id):
            out.append(d)
            if len(out) == limit:
                break
        if (following := (yield from parts[i].next_op())) is not None:
            heapq.heappush(heap, (order(following), i, following))
    return out


list_dead = blocking(list_dead_op)


def count_dead(client: redis.Redis, keys: Keys) -> int:
    """How many dead letters there are over all partitions."""
    pipe = client.pipeline(transaction=False)
    for p in range(keys.partitions):
        pipe.xlen(keys.dead(p))
    return sum(int(n) for n in pipe.execute())


def find_dead(client: redis.Redis, keys: Keys, entry_id: str) -> DeadEntry | None:
    """The dead letter with stream entry id ``entry_id``, in any partition (None if not an id)."""
    if not is_entry_id(entry_id):
        return None
    for p in range(keys.partitions):
        key = keys.dead(p)
        rows: Any = client.xrange(key, min=entry_id, max=entry_id)
        for eid, fields in rows:
            return parse_dead(key, eid, fields.get(b"msg"))
    return None


def replay_dead(client: redis.Redis, keys: Keys, dead: DeadEntry) -> str:
    """Re-publish a dead letter's original message where it came from; return the new entry id."""
    letter = dead.letter
    if not dead.readable:
        raise ReplayError(f"dead letter {dead.id} cannot be read ({letter.reason}); purge it instead")
    if not letter.original:
        raise ReplayError(f"dead letter {dead.id} has no original message to replay")
    if keys.parse_stream(letter.stream) is None:
        raise ReplayError(f"dead letter {dead.id} came from {letter.stream!r}, not a task stream of this deployment")
    pipe = client.pipeline(transaction=True)
    pipe.xadd(letter.stream, {"msg": letter.original.encode("utf-8")})
    pipe.xdel(dead.key, dead.id)
    if letter.run_id and client.exists(keys.run(letter.run_id)):
        pipe.hset(keys.run(letter.run_id), mapping={"status": RunStatus.QUEUED, "role": letter.role})
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
