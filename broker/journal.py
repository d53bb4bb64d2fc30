"""The call journal of code roles: what a handler's model, tool and step calls returned, per message.

A code role's handler may make several calls per hop (``ctx.generate``, ``ctx.chat``, ``ctx.tool``,
``ctx.step``; ``ctx.sleep`` and ``ctx.wait_for``, whose results ``broker/timers.py`` records when they
wake). Each result is recorded here before the handler goes on, in the hash
``Keys.journal(run_id, msg_id)``: field = the call's sequence number within the hop, value = a
:class:`Recorded` (the call's kind, a fingerprint of its inputs and the result's JSON). When the
entry is redelivered after a crash, the handler runs again and every call whose sequence number
and fingerprint match a record gets the recorded result back without calling anything (nor
charging the run's budget).

``Keys.journal_hops(run_id)`` maps each hop (``role:hop:part``) to the message id whose journal
it wrote: fork and replay with ``reuse_journal`` name a source run in the new run's record
(``journal_from``), and the new run's hops read the source's journal of the same hop.

Both keys carry the run's partition tag (one slot with the run's other keys on Redis Cluster) and
live as long as the run record (``record_ttl_s``; 0 keeps them, like the record).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import msgspec
import redis

from .keys import Keys
from .text import as_text

__all__ = [
    "JOURNAL_FROM",
    "CallKind",
    "HopJournal",
    "JournalWrite",
    "Recorded",
    "hop_key",
    "read_journal",
    "read_journals",
    "write_journal",
]

CallKind = Literal["generate", "chat", "tool", "step", "sleep", "wait"]
JOURNAL_FROM = "journal_from"
"""The run record field naming the run whose journal a fork or replay reuses."""


class Recorded(msgspec.Struct, frozen=True, kw_only=True, array_like=True):
    """One recorded call: its ``kind``, the fingerprint ``fp`` of its inputs and its result as JSON."""

    kind: CallKind
    fp: str
    value: msgspec.Raw


@dataclass(frozen=True, slots=True)
class JournalWrite:
    """One call result to record: sequence ``seq`` of message ``msg_id`` of hop ``hop`` (see :func:`hop_key`)."""

    run_id: str
    msg_id: str
    hop: str
    seq: int
    record: Recorded


@dataclass(frozen=True, slots=True)
class HopJournal:
    """What a hop finds on (re)delivery: its own records by sequence number, and the records of the
    same hop of the run it reuses the journal of (``journal_from``; empty when none)."""

    own: Mapping[int, Recorded]
    reused: Mapping[int, Recorded]


_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Recorded).decode


def hop_key(role: str, hop: int, part: int) -> str:
    """The name of a hop across runs (a fork's hop and its source's hop share it)."""
    return f"{role}:{hop}:{part}"


def write_journal(client: redis.Redis, keys: Keys, writes: Sequence[JournalWrite]) -> None:
    """Record ``writes`` (of any runs) in one round trip; each hash lives as long as run records
    (``keys.retention.record_ttl_s``; 0 keeps them).

    Re-recording a sequence number overwrites it (a call that no longer matched its record ran again).
    """
    if not writes:
        return
    pipe = client.pipeline(transaction=False)
    touched: set[str] = set()
    for w in writes:
        key = keys.journal(w.run_id, w.msg_id)
        pipe.hset(key, str(w.seq), _encode(w.record))
        if key not in touched:
            touched.add(key)
            hops = keys.journal_hops(w.run_id)
            pipe.hsetnx(hops, w.hop, w.msg_id)
            if (ttl_s := keys.retention.record_ttl_s) > 0:
                pipe.expire(key, ttl_s)
                pipe.expire(hops, ttl_s)
    pipe.execute()


def _records(raw: Mapping[Any, Any]) -> dict[int, Recorded]:
    found: dict[int, Recorded] = {}
    for field, value in raw.items():
        try:
            found[int(as_text(field))] = _decode(value)
        except (ValueError, msgspec.DecodeError):
            continue  # an unreadable record is a call made again, never a crash
    return found


def read_journal(client: redis.Redis, keys: Keys, run_id: str, msg_id: str, hop: str) -> HopJournal:
    """The records of message ``msg_id`` (hop ``hop``) of ``run_id``, and of the same hop of the run
    its record names in ``journal_from`` (see :func:`read_journals`)."""
    return read_journals(client, keys, [(run_id, msg_id, hop)])[0]


def read_journals(client: redis.Redis, keys: Keys, hops: Sequence[tuple[str, str, str]]) -> list[HopJournal]:
    """What each of ``hops`` (``(run_id, msg_id, hop)``) finds: its own records and those of the same
    hop of the run its record names in ``journal_from``. One round trip for all of them; two more
    only when some reuse a source run's journal."""
    if not hops:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id, msg_id, _ in hops:
        pipe.hgetall(keys.journal(run_id, msg_id))
        pipe.hget(keys.run(run_id), JOURNAL_FROM)
    replies = pipe.execute()
    owns = [_records(raw or {}) for raw in replies[0::2]]
    sources = [(i, as_text(src)) for i, src in enumerate(replies[1::2]) if src]
    reused: dict[int, dict[int, Recorded]] = {}
    if sources:
        pipe = client.pipeline(transaction=False)
        for i, source_id in sources:
            pipe.hget(keys.journal_hops(source_id), hops[i][2])
        found = [(i, source_id, as_text(m)) for (i, source_id), m in zip(sources, pipe.execute(), strict=True) if m]
        if found:
            pipe = client.pipeline(transaction=False)
            for _, source_id, source_msg in found:
                pipe.hgetall(keys.journal(source_id, source_msg))
            for (i, _, _), raw in zip(found, pipe.execute(), strict=True):
                reused[i] = _records(raw or {})
    return [HopJournal(own, reused.get(i, {})) for i, own in enumerate(owns)]
