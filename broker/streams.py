"""Consumer-group plumbing: groups, reads, delivery counts, reclaiming, heartbeats.

``GroupStreams`` is one consumer's view of a consumer group over some streams: a role's
partition streams (``RoleStreams``) or the call streams of some tools (group ``tools``).

Reads follow the at-least-once recipe: a worker first re-reads its own pending entries (``0``),
then new ones (``>``) with a finite BLOCK. Work held by dead consumers (no heartbeat) is claimed
at once; work idle past the lease is claimed with XAUTOCLAIM. Live workers refresh the idle
time of their in-flight entries (``XCLAIM ... JUSTID``) so slow work is never stolen.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
from redis.crc import key_slot
from redis.exceptions import DataError, OutOfMemoryError

from ..protocol import Name
from . import direct
from .cluster import SlotFanIn, is_cluster, slot_groups
from .entry import Entry, entry_id_key
from .errors import CommandRefused, Redis
from .fairshare import FairRead, TenantStreams
from .keys import Keys
from .lanes import DEFAULT_BATCH_SHARE, BatchShare, read_by_lane, refill_streams
from .records import Heartbeat, encode_heartbeat
from .reserve import ReservedRead
from .tenants import all_limits
from .text import as_text

__all__ = ["Entry", "GroupStreams", "ReadOptions", "RoleStreams", "ensure_group", "entry_id_key"]

log = logging.getLogger("baton.broker")


def _is_nogroup(exc: CommandRefused) -> bool:
    return str(exc).startswith("NOGROUP")


class GroupStreams:
    """A consumer group over ``streams`` (the same group name on each), seen by one consumer."""

    def __init__(self, client: Redis, keys: Keys, streams: Sequence[str], group: str, consumer: str) -> None:
        self.client = client
        self.keys = keys
        self.consumer = consumer
        self.group = group
        self.streams = list(streams)
        groups = slot_groups(self.streams) if is_cluster(client) else [self.streams]
        self._fan = SlotFanIn(groups, self._read_slot) if len(groups) > 1 else None

    def close(self, *, wait: bool = False) -> None:
        """Stop the per-slot readers of a cluster (``wait``: until their blocked reads return)."""
        if self._fan is not None:
            self._fan.close(wait=wait)

    # groups ---------------------------------------------------------------
    def ensure_groups(self) -> None:
        """Create the group on every partition stream (MKSTREAM, from the start); idempotent."""
        for stream in self.streams:
            ensure_group(self.client, stream, self.group)

    # reading ----------------------------------------------------------------
    def read(self, *, pending: bool, count: int, block_ms: int | None) -> list[Entry]:
        """Read own pending entries (``pending=True``) or new ones, re-creating a lost group.

        On a cluster whose slots hold these streams apart, one read per slot (``SlotFanIn``).
        """
        if self._fan is not None:
            return self._fan.read(pending=pending, count=count, block_ms=block_ms)
        return self._read_slot(self.streams, pending, count, block_ms)

    def _read_slot(self, streams: list[str], pending: bool, count: int, block_ms: int | None) -> list[Entry]:
        """One read over ``streams`` of one hash slot (all of them, outside a cluster)."""
        return self.read_streams(streams, pending=pending, count=count, block_ms=block_ms)

    def read_each_slot(self, streams: Sequence[str], count: int) -> list[Entry]:
        """Up to ``count`` new entries of ``streams`` without blocking, one read per hash slot."""
        groups = slot_groups(list(streams)) if self._fan is not None else [list(streams)]
        entries: list[Entry] = []
        for group in groups:
            if len(entries) >= count:
                break
            entries += self.read_streams(group, pending=False, count=count - len(entries), block_ms=None)
        return entries

    def read_streams(self, streams: Sequence[str], *, pending: bool, count: int, block_ms: int | None,
                     retry: bool = True) -> list[Entry]:
        """``read`` over some of the group's ``streams`` only. A missing group (on any of them, such
        as a lane nobody wrote to yet) is re-created, then the read is tried once more."""
        if count < 1 or (block_ms is not None and block_ms < 0):
            raise DataError("XREADGROUP count must be a positive integer and block non-negative")
        block = [] if pending or block_ms is None else ["BLOCK", block_ms]
        reply: Any
        try:  # redis-py's xreadgroup, sent on the thread's held connection (broker/direct.py)
            reply = direct.execute(self.client, "XREADGROUP", "GROUP", self.group, self.consumer, "COUNT", count,
                                   *block, "STREAMS", *streams, *(["0" if pending else ">"] * len(streams)))
        except CommandRefused as exc:
            if not _is_nogroup(exc):
                raise
            self._recreate(streams)
            if not retry:
                return []
            return self.read_streams(streams, pending=pending, count=count, block_ms=block_ms, retry=False)
        entries: list[Entry] = []
        for stream, items in reply or []:
            for entry_id, fields in items:
                if fields is None:  # pending entry whose data was trimmed away
                    fields = {}
                entries.append(Entry(as_text(stream), as_text(entry_id), fields.get(b"msg"), fields))
        if pending and entries:
            entries = self._with_delivery_counts(entries)
        return entries

    def _recreate(self, streams: Sequence[str]) -> None:
        log.warning(
            "consumer group %r is missing on %s (Redis restarted without persistence, or the group or "
            "stream was deleted); re-creating it",
            self.group, ", ".join(streams),
        )
        for stream in streams:
            ensure_group(self.client, stream, self.group)

    def _with_delivery_counts(self, entries: list[Entry]) -> list[Entry]:
        by_stream: dict[str, list[Entry]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e)
        counts: dict[str, int] = {}
        for stream, group in by_stream.items():
            ids = sorted((e.id for e in group), key=entry_id_key)
            rows = self.client.xpending_range(
                stream, self.group, min=ids[0], max=ids[-1], count=len(ids) + 100,
                consumername=self.consumer,
            )
            counts.update({as_text(r["message_id"]): int(r["times_delivered"]) for r in rows})
        return [
            Entry(e.stream, e.id, e.data, e.fields, counts.get(e.id, e.deliveries)) for e in entries
        ]

    # leases and reclaiming ----------------------------------------------------
    def touch(self, entries: list[Entry]) -> None:
        """Reset the idle time of in-flight entries (a lease heartbeat; count unchanged)."""
        by_stream: dict[str, list[Any]] = {}
        for e in entries:
            by_stream.setdefault(e.stream, []).append(e.id)
        for stream, ids in by_stream.items():
            self.client.xclaim(stream, self.group, self.consumer, 0, ids, justid=True)

    def reclaim(self, *, lease_ms: int, count: int = 100) -> int:
        """Claim what dead consumers hold and what sat idle past the lease; drop dead consumers.

        Claimed entries become this consumer's pending entries, to be read with
        ``read(pending=True)``. Claims use JUSTID, which leaves the delivery count alone: the read
        that follows adds the one delivery, so every attempt counts once against
        ``max_deliveries`` whether it came from a reclaim or a retry. Returns how many were claimed.
        """
        claimed = 0
        for stream in self.reclaimable():
            try:
                consumers = self.client.xinfo_consumers(stream, self.group)
            except CommandRefused as exc:
                if _is_nogroup(exc) or str(exc).startswith("no such key"):
                    self._recreate([stream])
                    continue
                raise
            for info in consumers:
                name = as_text(info["name"])
                if name == self.consumer or self.client.exists(self.keys.heartbeat(name)):
                    continue
                if int(info["pending"]) > 0:
                    rows = self.client.xpending_range(
                        stream, self.group, min="-", max="+", count=count, consumername=name
                    )
                    ids: list[Any] = [as_text(r["message_id"]) for r in rows]
                    if ids:
                        got: Any = self.client.xclaim(stream, self.group, self.consumer, 0, ids, justid=True)
                        claimed += len(got)
                        log.info("reclaimed %d entries from dead consumer %s", len(got), name)
                elif int(info["idle"]) > lease_ms:
                    self.client.xgroup_delconsumer(stream, self.group, name)
                    log.info("removed dead consumer %s (nothing pending)", name)
            # with JUSTID redis-py returns just the claimed ids
            msgs: Any = self.client.xautoclaim(
                stream, self.group, self.consumer, lease_ms, "0-0", count=count, justid=True
            )
            if msgs:
                claimed += len(msgs)
                log.info("reclaimed %d entries idle past the %d ms lease", len(msgs), lease_ms)
        return claimed

    def reclaimable(self) -> list[str]:
        """The streams whose dead or stalled entries this consumer takes over (all of them)."""
        return self.streams

    # heartbeats -------------------------------------------------------------
    def beat(self, heartbeat: Heartbeat, ttl_s: float) -> None:
        """Write this consumer's heartbeat key with a TTL.

        Redis at ``maxmemory`` (``noeviction``) refuses the SET; the key's TTL is then renewed
        with ``PEXPIRE``, which it allows, so a live worker never looks dead during the outage.
        """
        key, ttl_ms = self.keys.heartbeat(self.consumer), int(ttl_s * 1000)
        try:
            self.client.set(key, encode_heartbeat(heartbeat), px=ttl_ms)
        except OutOfMemoryError:
            if not self.client.pexpire(key, ttl_ms):
                raise

    def forget(self) -> None:
        """Remove this consumer's heartbeat; and its group entry when nothing is pending."""
        self.client.delete(self.keys.heartbeat(self.consumer))
        for stream in self.streams:
            try:
                pending = self.client.xpending_range(
                    stream, self.group, min="-", max="+", count=1, consumername=self.consumer
                )
                if not pending:
                    self.client.xgroup_delconsumer(stream, self.group, self.consumer)
            except CommandRefused:
                pass


def ensure_group(client: Redis, stream: str, group: str) -> None:
    """Create ``group`` on ``stream`` from id 0 with MKSTREAM; ignore BUSYGROUP."""
    try:
        client.xgroup_create(stream, group, id="0", mkstream=True)
    except CommandRefused as exc:
        if "BUSYGROUP" not in str(exc):
            raise


@dataclass(frozen=True, slots=True)
class ReadOptions:
    """How a role's consumer shares its reads of new work between lanes and tenants (``RoleStreams``;
    a worker's come from its settings, ``Settings.read_options``). The defaults read as a shared
    worker with no caps."""

    batch_share: float = DEFAULT_BATCH_SHARE
    """Share of the read slots kept for the batch lane (``broker.lanes``)."""
    batch_count: int = 0
    """Most entries of a read of batch work alone (0: no cap)."""
    tenant_count: int = 0
    """Most entries of one tenant per read while several are busy (0: no cap; ``broker.fairshare``)."""
    reserved: bool = False
    """Read only the interactive lane of tenants not flooding, a few entries of each (``broker.reserve``)."""


class RoleStreams(GroupStreams):
    """The partition and lane streams and consumer group of one role of one workflow, seen by one
    consumer, reading as ``options`` say (``ReadOptions``). New work is read interactive lane first,
    with ``batch_share`` of the slots kept for the batch lane, and reads of batch work alone capped at
    ``batch_count`` (0: no cap; ``broker.lanes``); within a lane, tenants share the slots by weight,
    each taking at most ``tenant_count`` (0: no cap) while several are busy (``broker.fairshare``: the
    tenants' streams are added to ``streams`` as their tenants appear). A ``reserved`` consumer reads
    only the interactive lane of tenants not flooding, a few entries of each (``broker.reserve``)."""

    def __init__(self, client: Redis, keys: Keys, workflow: str, role: str, consumer: str,
                 partitions: Sequence[int] | None = None, *, options: ReadOptions = ReadOptions()) -> None:
        for what, name in (("workflow", workflow), ("role", role)):
            try:
                msgspec.convert(name, Name)
            except msgspec.ValidationError:
                raise ValueError(f"{what} name {name!r} is not key-safe (letters, digits, _ . -)") from None
        self.share = BatchShare(options.batch_share)
        self.batch_count = options.batch_count
        super().__init__(client, keys, keys.streams(workflow, role, partitions), keys.group(role), consumer)
        self.workflow = workflow
        self.role = role
        self.tenants = TenantStreams(client, keys, workflow, role, partitions, weights=self._weights)
        self.fair = FairRead(self._read_new, keys, tenant_count=options.tenant_count)
        self.reserved = ReservedRead(self._read_new, keys) if options.reserved else None

    def read(self, *, pending: bool, count: int, block_ms: int | None) -> list[Entry]:
        """Own pending entries of every lane, or new ones by lane (``broker.lanes.read_by_lane``; on
        a cluster, by lane within each partition's slot), tenants by weight within a lane."""
        if not pending:
            self.add_tenants()
        return super().read(pending=pending, count=count, block_ms=block_ms)

    def add_tenants(self) -> None:
        """Read the streams of tenants new in the role's partitions too (a look-up at most every
        ``fairshare.REFRESH_S``), and the tenants' weights."""
        new = self.tenants.new_streams()
        if self.tenants.weights is not None:
            self.fair.weights = self.tenants.weights
        for stream in new:
            ensure_group(self.client, stream, self.group)
            self.streams.append(stream)
            if self._fan is not None:  # a tenant's streams share their partition's slot
                slot = key_slot(stream.encode())
                next(g for g in self._fan.groups if key_slot(g[0].encode()) == slot).append(stream)

    def _read_slot(self, streams: list[str], pending: bool, count: int, block_ms: int | None) -> list[Entry]:
        if pending:
            return self.read_streams(streams, pending=True, count=count, block_ms=block_ms)
        if self.reserved is not None:
            return self.reserved(streams, count, block_ms)
        return read_by_lane(self.fair, self.keys, streams, count=count, block_ms=block_ms, share=self.share,
                            batch_count=self.batch_count)

    @property
    def idle(self) -> bool:
        """The last read of new work found every lane empty, so the next one blocks at once
        (``BatchShare.drained``): no work of this role is on its way."""
        return self.reserved is not None or self.share.drained  # a reserved read blocks whenever nothing waits

    def read_more(self, entries: Sequence[Entry], count: int) -> list[Entry]:
        """Up to ``count`` new entries to top up ``entries`` without blocking: interactive ones only
        when ``entries`` hold interactive work (``broker.lanes.refill_streams``)."""
        if self.reserved is not None or self.fair.crowded():  # a short read on purpose (reserve, fairshare)
            return []
        only = refill_streams(self.keys, self.streams, entries)
        if only is None:
            return self.read(pending=False, count=count, block_ms=None)
        return self.read_each_slot(only, count)

    def reclaimable(self) -> list[str]:
        """A reserved consumer takes over interactive entries only (a dead shared worker's batch of a
        flood is the shared workers' to finish)."""
        if self.reserved is None:
            return self.streams
        return [s for s in self.streams if self.reserved.eligible(s)]

    def _weights(self) -> dict[str, int]:
        return {name: lim.weight for name, lim in all_limits(self.client, self.keys).items()}

    def _read_new(self, streams: Sequence[str], count: int, block_ms: int | None) -> list[Entry]:
        return self.read_streams(streams, pending=False, count=count, block_ms=block_ms)
