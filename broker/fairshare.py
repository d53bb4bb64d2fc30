"""Fair dispatch across tenants: each tenant's runs have their own task streams, read by weight.

A run of a tenant travels on its tenant's streams (``Keys.stream(..., tenant=...)``: one per role,
lane and partition), so one tenant's backlog is a queue of its own, not a prefix of everyone's. A
submit lists the tenant in its partition's tenant set (``Keys.tenant_set``); a role's reader
(:class:`TenantStreams`) reads those sets again every ``refresh_s`` and adds the new tenants'
streams to what it reads. Runs of no tenant stay on the plain streams, so a deployment without
tenants reads what it read before, plus one ``SMEMBERS`` per partition a second.

:class:`FairRead` splits each read's slots across the tenants whose streams it reads: tenants that
had work on the previous read of the lane share the slots by ``weight`` (the tenants file's, published with
the limits; 1 when unknown), and every other tenant may take as many as the smallest of those
shares, so a tenant that was idle is served on the very next read however long another's backlog
is. Slots a tenant leaves unused go to the tenants whose streams filled their share (a second
read), so a lone busy tenant still fills its batches. ``XREADGROUP``'s ``COUNT`` is per stream, so
tenants of one share are read in one call (with equal weights, one call for all).

A tenant's task that arrives while another tenant's batch is in the model call waits for that call
at each hop. ``BATON_TENANT_BATCH_SIZE`` (``tenant_count``) shortens it: while more than one tenant
had work within ``BUSY_S``, a read takes at most that many tasks of each tenant (smaller model
calls: less waiting for the others, less throughput for the busy tenant; ``bench.fairness``).
Reserved workers (``broker/reserve.py``) remove that wait instead: they never take a flood's batch.
Priority lanes (``broker/lanes.py``) are applied first: the fair split is within each lane.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from .drive import Op, blocking
from .errors import BrokerError
from .keys import Keys

if TYPE_CHECKING:
    from .entry import Entry
    from .lanes import ReadNew

__all__ = ["BUSY_S", "REFRESH_S", "FairRead", "TenantStreams", "tenant_streams", "tenant_streams_op"]

log = logging.getLogger("baton.broker")

BUSY_S = 5.0
"""A tenant whose streams gave entries this recently counts as busy for ``FairRead.tenant_count``."""

REFRESH_S = 1.0
"""How often a reader looks for tenants new in its partitions (a new tenant's first task waits up
to this long, plus a blocking read, to be seen)."""


def tenant_streams_op(keys: Keys, workflow: str, role: str, partitions: Sequence[int] | None = None) -> Op[list[str]]:
    """The task streams of ``role`` of ``workflow`` of every tenant listed in ``partitions``' tenant
    sets (one pipelined ``SMEMBERS`` per partition), by partition, each tenant's lanes in order."""
    chosen = list(range(keys.partitions) if partitions is None else partitions)
    pipe = yield lambda c: c.pipeline(transaction=False)
    for p in chosen:
        pipe.smembers(keys.tenant_set(p))
    replies: list[Any] = yield lambda _: pipe.execute()
    out: list[str] = []
    for p, members in zip(chosen, replies, strict=True):
        for tenant in sorted(m.decode() if isinstance(m, bytes) else str(m) for m in members or ()):
            out += keys.lane_streams(workflow, role, p, tenant)
    return out


tenant_streams = blocking(tenant_streams_op)


class TenantStreams:
    """The tenants' streams one reader of ``role`` reads, looked up again every ``refresh_s`` (and
    the tenants' weights, when ``weights`` reads them)."""

    def __init__(self, client: redis.Redis, keys: Keys, workflow: str, role: str,
                 partitions: Sequence[int] | None = None, *, weights: Callable[[], dict[str, int]] | None = None,
                 refresh_s: float = REFRESH_S) -> None:
        self.client, self.keys, self.workflow, self.role = client, keys, workflow, role
        self.read_weights = weights
        self.partitions = None if partitions is None else list(partitions)
        self.refresh_s = refresh_s
        self.known: set[str] = set()
        self.weights: dict[str, int] | None = None
        """Each published tenant's weight, as of the last look-up (None: never read)."""
        self._next = 0.0

    def new_streams(self) -> list[str]:
        """Tenant streams not seen before, when a look-up is due (else none). A failed look-up
        (Redis away, an ACL without ``SMEMBERS``) is logged and tried again at the next one."""
        now = time.monotonic()
        if now < self._next:
            return []
        self._next = now + self.refresh_s
        try:
            found = tenant_streams(self.client, self.keys, self.workflow, self.role, self.partitions)
            if self.read_weights is not None:
                self.weights = self.read_weights()
        except (BrokerError, redis.RedisError) as exc:
            log.warning("cannot read the tenant sets (%s); reading the tenants' streams known so far", exc)
            return []
        new = [s for s in found if s not in self.known]
        self.known.update(new)
        return new


class FairRead:
    """A ``ReadNew`` (``broker/lanes.py``) that shares each read's slots across tenants by ``weights``
    (tenant -> weight; 1 for a tenant not named)."""

    def __init__(self, read: ReadNew, keys: Keys, weights: Mapping[str, int] | None = None, *,
                 tenant_count: int = 0) -> None:
        self.read = read
        self.keys = keys
        self.weights: Mapping[str, int] = weights or {}
        self.tenant_count = tenant_count
        """At most this many entries of one tenant per read while several tenants are busy (0: no cap)."""
        self.seen: dict[str, float] = {}
        """When each tenant's streams last gave entries (``time.monotonic``)."""
        self.active: dict[str, set[str]] = {}
        """Per lane, the tenants (``""``: runs of none) whose streams gave entries on its last read."""
        self._names: dict[str, tuple[str, str]] = {}

    def __call__(self, streams: Sequence[str], count: int, block_ms: int | None) -> list[Entry]:
        by_tenant = self._by_tenant(streams)
        if len(by_tenant) < 2 or block_ms is not None:
            return self.read(streams, count, block_ms)  # one tenant, or a blocking read of whoever comes first
        lane = self._lane(streams[0])
        now = time.monotonic()
        crowded = self.crowded(now)
        active = self.active.get(lane, set())
        shares = self.shares(list(by_tenant), count, active)
        if crowded:  # a shorter model call for whoever arrives next
            shares = {t: min(n, self.tenant_count) for t, n in shares.items()}
        got: list[Entry] = []
        full: list[str] = []
        newcomers = [t for t in by_tenant if t not in active] if active else []
        if newcomers:  # tenants idle on the last read first: a newcomer's hop is a short call, not a full one
            group = [s for t in newcomers for s in by_tenant[t]]
            got = self.read(group, min(shares[t] for t in newcomers), None)
            if got:
                shares = {t: min(n, len(got)) for t, n in shares.items()}
            by_tenant = {t: ss for t, ss in by_tenant.items() if t in active}
        arrived = bool(got)
        for share in sorted({shares[t] for t in by_tenant}, reverse=True):  # one read per share (equal weights: one)
            group = [s for t, ss in by_tenant.items() if shares[t] == share for s in ss]
            part = self.read(group, share, None)
            got += part
            full += _full_streams(group, part, share)
        if full and len(got) < count and not crowded and not arrived:  # unused slots: to those with more waiting
            got += self.read(full, max(1, math.ceil((count - len(got)) / len(full))), None)
        self.active[lane] = {self._tenant(e.stream) for e in got}
        self.seen.update(dict.fromkeys(self.active[lane], now))
        return got

    def crowded(self, now: float | None = None) -> bool:
        """Whether reads take at most ``tenant_count`` of each tenant now: more than one tenant was busy
        within ``BUSY_S`` (a lingering worker does not top such a read up either: ``RoleStreams.read_more``)."""
        now = time.monotonic() if now is None else now
        return self.tenant_count > 0 and sum(now - t < BUSY_S for t in self.seen.values()) > 1

    def shares(self, tenants: Sequence[str], count: int, active: set[str]) -> dict[str, int]:
        """Entries to read per stream of each of ``tenants``: the tenants ``active`` on the last read
        split ``count`` by weight (at least one each); the others get the smallest of those shares,
        so a tenant that was idle is served on this read (all tenants split it when none was active)."""
        busy = [t for t in tenants if t in active] or list(tenants)
        total = sum(self._weight(t) for t in busy)
        out = {t: max(1, count * self._weight(t) // total) for t in busy}
        least = min(out.values())
        return {t: out.get(t, least) for t in tenants}

    def _weight(self, tenant: str) -> int:
        return max(1, self.weights.get(tenant, 1))

    def _tenant(self, stream: str) -> str:
        return self._name(stream)[0]

    def _lane(self, stream: str) -> str:
        return self._name(stream)[1]

    def _name(self, stream: str) -> tuple[str, str]:
        """The tenant and lane of ``stream``, parsed once (a read's hot path)."""
        if (hit := self._names.get(stream)) is None:
            name = self.keys.parse_stream(stream)
            hit = self._names[stream] = (name.tenant, name.lane) if name is not None else ("", "")
        return hit

    def _by_tenant(self, streams: Sequence[str]) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for s in streams:
            out.setdefault(self._tenant(s), []).append(s)
        return out


def _full_streams(streams: Sequence[str], got: Sequence[Entry], share: int) -> list[str]:
    """Those of ``streams`` that gave ``share`` entries (a full share: more may wait there)."""
    n: dict[str, int] = {}
    for e in got:
        n[e.stream] = n.get(e.stream, 0) + 1
    return [s for s in streams if n.get(s, 0) >= share]
