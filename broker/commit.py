"""The atomic handoff: outputs, scratchpad entry, run record, run events and XACK in one Lua step.

A handoff either persists whole or not at all, keyed by an idempotency marker derived from the
input message id. The script first checks that the input entry is still pending for this
consumer, so a worker whose entry was reclaimed cannot commit a second copy.

With a ``ReplicaWait`` (``BATON_WAIT_REPLICAS``), the batch ends with ``WAIT n timeout`` on the
connection that wrote it (``broker/replication.py``); ``commit_batch`` returns the count.

A worker holds its commit settings once, in a :class:`Committer` (its Redis face, keys with their
retention, consumer group and name, and replica wait), as arq's ``ArqRedis`` holds its settings.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import redis
from redis.exceptions import AskError, MovedError, TryAgainError

from . import direct
from .cluster import is_cluster
from .keys import Keys
from .replication import ReplicaWait
from .scripts import is_missing, library
from .streams import Entry

__all__ = ["Committed", "Committer", "Handoff", "Outcome", "commit", "commit_batch", "commit_call"]


class Outcome(enum.IntEnum):
    """What a commit did."""

    STALE = 0
    """The input was no longer pending for this consumer (reclaimed or acked): nothing written."""
    COMMITTED = 1
    DUPLICATE = -1
    """The message had committed before; the input was acked again, nothing else written."""
    ENDED = 2
    """The run had ended (its record and events are final): nothing written, the input left pending
    (the worker dead-letters it with the reason)."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """Everything one processed entry writes.

    ``outputs`` are ``(stream key, payload)`` pairs published with XADD; ``pad`` is
    ``(agent, field, value)`` for the scratchpad entry; ``record`` fields go to the run record;
    ``events`` (encoded with ``encode_event``) go to the run's event log, trimmed and expired as
    every event-log write is (``broker/events.py``). ``counts`` are added to run record fields
    (``HINCRBY``) with the commit: a hop's usage accounting (``broker.budget.usage_counts``)
    costs no round trip of its own and counts once per committed hop.
    ``msg_id`` and ``run_id`` locate the idempotency marker; a message that could not be
    decoded uses the entry id and the placeholder slot of its partition.
    """

    entry: Entry
    run_id: str | None
    msg_id: str
    outputs: Sequence[tuple[str, bytes]] = ()
    pad: tuple[str, str, bytes] | None = None
    record: Mapping[str, str | bytes | float | int] = field(default_factory=dict)
    partition: int = 0
    events: Sequence[bytes] = ()
    ends_ended: bool = False
    """May write a run that has ended already (a cancelled run's halt); otherwise such a commit is ``ENDED``."""
    counts: Mapping[str, int] = field(default_factory=dict)

    def after(self, events: Sequence[bytes]) -> Handoff:
        """This handoff with ``events`` written before its own (``dataclasses.replace`` without its
        per-call introspection: once per hop)."""
        return Handoff(self.entry, self.run_id, self.msg_id, self.outputs, self.pad, self.record, self.partition,
                       [*events, *self.events], self.ends_ended, self.counts)



def commit(
    client: redis.Redis,
    keys: Keys,
    group: str,
    consumer: str,
    handoffs: Sequence[Handoff],
) -> list[Outcome]:
    """Commit several handoffs in one pipelined round trip; return each one's outcome."""
    return commit_batch(client, keys, group, consumer, handoffs).outcomes


@dataclass(frozen=True, slots=True)
class Committed:
    """What ``commit_batch`` did: each handoff's outcome and, with a ``ReplicaWait``, the replica count."""

    outcomes: list[Outcome]
    replicas: int | None = None
    """Replicas that acknowledged the batch within the timeout (``None``: no WAIT was asked)."""


def commit_batch(
    client: redis.Redis,
    keys: Keys,
    group: str,
    consumer: str,
    handoffs: Sequence[Handoff],
    *,
    wait: ReplicaWait | None = None,
) -> Committed:
    """``commit``, then (with ``wait`` on) ``WAIT`` for replicas on the connection that wrote.

    ``marker_ttl_s`` is how long a handoff's idempotency marker is kept (it must outlive any
    redelivery of the input entry).
    """
    lib = library()
    lib.mode(client)
    calls = [_call(keys, group, consumer, h) for h in handoffs]
    wait = wait if wait is not None and wait.on and calls else None
    results, acked = _run(client, calls, wait)
    missing = [i for i, r in enumerate(results) if is_missing(r)]
    if missing:  # the server lost the library (restart without persistence, flush): check it again, retry those
        lib.forget(client)
        retried, retried_acked = _run(client, [calls[i] for i in missing], wait)
        for i, r in zip(missing, retried, strict=True):
            results[i] = r
        acked = retried_acked if acked is None or retried_acked is None else min(acked, retried_acked)
    for r in results:
        if isinstance(r, Exception):
            raise r
    return Committed([Outcome(int(r)) for r in results], acked)


@dataclass(frozen=True, slots=True)
class Committer:
    """One consumer's commits, with their settings held once: ``client`` and ``keys`` (the key
    layout and ``keys.retention``), the consumer ``group`` and ``consumer`` name the inputs are
    pending for, and the replica ``wait`` after each batch (None or ``replicas=0``: none)."""

    client: redis.Redis
    keys: Keys
    group: str
    consumer: str
    wait: ReplicaWait | None = None

    def commit(self, handoffs: Sequence[Handoff]) -> Committed:
        """Commit ``handoffs`` (one atomic step each, one round trip), then wait for replicas."""
        return commit_batch(self.client, self.keys, self.group, self.consumer, handoffs, wait=self.wait)


def _run(
    client: redis.Redis, calls: list[tuple[int, list[str | bytes | float | int]]], wait: ReplicaWait | None
) -> tuple[list[Any], int | None]:
    """Run the commit calls; with ``wait``, end the same pipeline (one connection) with ``WAIT``."""
    lib = library()
    if wait is None:  # on the thread's held connection (broker/direct.py): one call, or a pipeline
        commands = [lib.command(client, "commit", *_split(call)) for call in calls]
        if len(commands) == 1:
            try:
                return [direct.execute(client, *commands[0])], None
            except redis.ResponseError as exc:
                return [exc], None
        return direct.pipeline(client, commands), None
    if is_cluster(client):
        return _run_per_node(client, calls, wait)
    pipe = client.pipeline(transaction=False)
    for call in calls:
        pipe.execute_command(*lib.command(client, "commit", *_split(call)))  # type: ignore[no-untyped-call]
    pipe.wait(wait.replicas, wait.timeout_ms)
    results = list(pipe.execute(raise_on_error=False))
    acked = results.pop()
    if isinstance(acked, Exception):
        raise acked
    return results, int(acked)


def _run_per_node(
    client: redis.Redis, calls: list[tuple[int, list[str | bytes | float | int]]], wait: ReplicaWait
) -> tuple[list[Any], int | None]:
    """On a cluster with ``wait``: one pipeline per primary, on that node's own connection, each
    ending with ``WAIT`` (which only counts what its connection wrote). The fewest acknowledgements
    of any node is the batch's. Slots that moved meanwhile reload the slot map and fail the batch
    as transient (``TRYAGAIN``): the retry re-commits idempotently."""
    by_node: dict[str, tuple[Any, list[int]]] = {}
    for i, (_, args) in enumerate(calls):
        node = client.get_node_from_key(args[0])  # type: ignore[attr-defined]
        by_node.setdefault(node.name, (node, []))[1].append(i)
    results: list[Any] = [None] * len(calls)
    acked: int | None = None
    for node, indexes in by_node.values():
        pipe = node.redis_connection.pipeline(transaction=False)
        for i in indexes:
            pipe.execute_command(*library().command(client, "commit", *_split(calls[i])))
        pipe.wait(wait.replicas, wait.timeout_ms)
        out = list(pipe.execute(raise_on_error=False))
        count = out.pop()
        if isinstance(count, Exception):
            raise count
        acked = int(count) if acked is None else min(acked, int(count))
        for i, r in zip(indexes, out, strict=True):
            results[i] = r
    if any(isinstance(r, MovedError | AskError) for r in results):
        client.nodes_manager.initialize()  # type: ignore[attr-defined]
        raise TryAgainError("TRYAGAIN slots moved during a commit with WAIT; retrying")
    return results, acked


def commit_call(keys: Keys, group: str, consumer: str, h: Handoff) -> tuple[list[str | bytes | float | int],
                                                                          list[str | bytes | float | int]]:
    """``(keys, args)`` of the ``commit`` function call that commits ``h`` (what ``commit_batch`` sends)."""
    return _split(_call(keys, group, consumer, h))


def _split(call: tuple[int, list[str | bytes | float | int]]) -> tuple[list[str | bytes | float | int],
                                                                     list[str | bytes | float | int]]:
    """``(keys, args)`` of one ``(numkeys, [keys..., args...])`` call."""
    numkeys, flat = call
    return flat[:numkeys], flat[numkeys:]


def _call(
    keys: Keys, group: str, consumer: str, h: Handoff
) -> tuple[int, list[str | bytes | float | int]]:
    """``(numkeys, [keys..., args...])`` of one handoff's commit call."""
    if h.run_id:
        run_key = keys.run(h.run_id)
        done_key = keys.done(h.run_id, h.msg_id)
    else:
        run_key = keys.placeholder(h.partition)
        done_key = f"{keys.tag(h.partition)}:done:{h.msg_id}"
    if h.pad and h.run_id:
        agent, pad_field, pad_value = h.pad
        pad_key, index_key = keys.pad(h.run_id, agent), keys.pads(h.run_id)
    else:
        agent, pad_field, pad_value = "", "", b""
        pad_key = index_key = keys.placeholder(h.partition)
    pairs: list[str | bytes | float | int] = []
    if h.run_id:
        for k, v in h.record.items():
            pairs += [k, v]
    events = h.events if h.run_id else ()
    counts: list[str | bytes | float | int] = []
    if h.run_id:
        for k, n in h.counts.items():
            counts += [k, n]
    events_key = keys.events(h.run_id) if h.run_id else keys.placeholder(h.partition)
    script_keys: list[str | bytes | float | int] = [h.entry.stream, done_key, run_key, pad_key, index_key, events_key]
    script_keys += [stream for stream, _ in h.outputs]
    retention = keys.retention
    return len(script_keys), [
        *script_keys,
        group, consumer, h.entry.id, retention.marker_s,
        pad_field, pad_value, agent, h.entry.id.split("-")[0],
        retention.record_ttl_s, retention.events_maxlen, retention.events_ttl_s, len(events),
        "1" if h.ends_ended else "0", len(pairs) // 2, *pairs, *(payload for _, payload in h.outputs), *events,
        len(counts) // 2, *counts,
    ]
