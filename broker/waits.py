"""Deliveries spent waiting: a worker that holds entries while it waits (for a model endpoint to come
back, for its rate limit, for an open breaker's back-off) marks their current delivery as waiting,
so a delivery its worker did not run them in does not count toward ``max_deliveries``.

A kill is what a poison message looks like: Redis counts a delivery for every read, and admission
dead-letters an entry delivered more than ``max_deliveries`` times. A worker killed while it waits
out an outage never ran the entries it held, though; a rolling update during a model provider's
incident would otherwise dead-letter healthy runs. So:

- before a worker waits with a batch, it marks each entry's current delivery (``mark_waiting``):
  one field ``<stream>|<entry id>|<delivery>`` in the role's hash of its partition (``Keys.waits``);
- before it runs them again (calls the model), it takes the marks back (``mark_running``);
- a worker killed in between leaves its marks: ``waited_deliveries`` counts, for an entry read
  again, the earlier deliveries spent waiting, and admission subtracts them.

A delivery counts as spent waiting only while its mark stands, and a mark is taken back before
anything runs, so a message that kills its worker while it runs still uses one delivery per
attempt. A mark that could not be written (Redis refused it) counts the delivery, as before.
The hash lives as long as the idempotency markers (``Retention.marker_s``) after its last mark:
it holds one short field per entry and kill during a wait (a kill while running leaves none).

Each mark also renews the lifetime of the waiting runs' state when records expire
(``BATON_RECORD_TTL_S``): the record, the scratchpads and the code-role journals. A commit renews
them at every hop; a run held through an outage longer than the TTL would otherwise lose its record
and earlier scratchpads mid-run.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .entry import Entry
from .errors import Redis
from .keys import Keys
from .text import as_text

__all__ = ["keep_runs", "mark_running", "mark_waiting", "waited_deliveries"]


def _field(entry: Entry, delivery: int) -> str:
    return f"{entry.stream}|{entry.id}|{delivery}"


def _key(keys: Keys, entry: Entry) -> str | None:
    name = keys.parse_stream(entry.stream)
    return keys.waits(name.workflow, name.role, name.partition) if name else None


def _by_key(keys: Keys, entries: Sequence[Entry]) -> dict[str, list[Entry]]:
    groups: dict[str, list[Entry]] = {}
    for e in entries:
        if (key := _key(keys, e)) is not None:
            groups.setdefault(key, []).append(e)
    return groups


def mark_waiting(client: Redis, keys: Keys, entries: Sequence[Entry], run_ids: Sequence[str] = ()) -> None:
    """Record that the current delivery of each of ``entries`` is spent waiting (one round trip),
    and renew the state of their runs ``run_ids`` (:func:`keep_runs`)."""
    keep_runs(client, keys, run_ids)
    groups = _by_key(keys, entries)
    if not groups:
        return
    now = int(time.time())
    pipe = client.pipeline(transaction=False)
    for key, group in groups.items():
        pipe.hset(key, mapping={_field(e, e.deliveries): now for e in group})
        pipe.expire(key, keys.retention.marker_s)
    pipe.execute()


def keep_runs(client: Redis, keys: Keys, run_ids: Sequence[str]) -> None:
    """Give the record, scratchpads and journals of ``run_ids`` a full ``record_ttl_s`` again (two
    round trips; nothing when records are kept). Keys that already expired stay gone."""
    ttl = keys.retention.record_ttl_s
    run_ids = list(dict.fromkeys(run_ids))
    if ttl <= 0 or not run_ids:
        return
    pipe = client.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.zrange(keys.pads(run_id), 0, -1)
        pipe.hvals(keys.journal_hops(run_id))
    found = pipe.execute()
    pipe = client.pipeline(transaction=False)
    for i, run_id in enumerate(run_ids):
        names = [keys.run(run_id), keys.pads(run_id), keys.journal_hops(run_id)]
        names += [keys.pad(run_id, as_text(agent)) for agent in found[2 * i]]
        names += [keys.journal(run_id, as_text(msg_id)) for msg_id in found[2 * i + 1]]
        for name in names:
            pipe.expire(name, ttl)
    pipe.execute()


def mark_running(client: Redis, keys: Keys, entries: Sequence[Entry]) -> None:
    """Take back the marks of ``entries``' current delivery: the entries run now. (Marks of earlier
    deliveries stay: each later admission counts them again.)"""
    groups = _by_key(keys, entries)
    if not groups:
        return
    pipe = client.pipeline(transaction=False)
    for key, group in groups.items():
        pipe.hdel(key, *(_field(e, e.deliveries) for e in group))
    pipe.execute()


def waited_deliveries(client: Redis, keys: Keys, entries: Sequence[Entry]) -> list[int]:
    """For each of ``entries``, how many of its earlier deliveries were spent waiting (one round trip)."""
    asked: list[tuple[int, str, list[str]]] = []
    for i, e in enumerate(entries):
        if e.deliveries > 1 and (key := _key(keys, e)) is not None:
            asked.append((i, key, [_field(e, d) for d in range(1, e.deliveries)]))
    counts = [0] * len(entries)
    if not asked:
        return counts
    pipe = client.pipeline(transaction=False)
    for _, key, fields in asked:
        pipe.hmget(key, fields)
    for (i, _, _), values in zip(asked, pipe.execute(), strict=True):
        counts[i] = sum(v is not None for v in values)
    return counts
