"""Bounded growth: trim acknowledged history, expire old results and forget expired runs.

Task streams are never trimmed by length (a blind ``MAXLEN`` deletes entries that are still
pending). They are trimmed with ``XTRIM MINID`` below a floor that no consumer group still
needs: the smallest of every group's oldest pending entry and the id just after its
last-delivered id. Everything below the floor was delivered to and acknowledged by every group.

Trimming is safe to run concurrently from many processes: a group's floor only moves up (acks
shrink the pending list from anywhere, new deliveries are always above the last-delivered id),
so a floor computed a moment ago is still a lower bound when ``XTRIM`` runs. A stream with no
group is left alone (nobody has read it yet).

Other state: run records, scratchpads and their index expire by TTL (``record_ttl_s``, set by
the commit script); the results stream keeps ``results_retention_s`` of history; the runs index
and the cancelled-runs set drop runs whose record no longer exists. Runs parked for a human review
past their deadline are failed (``broker.reviews.expire_reviews``). Dead letters are kept until
``baton dlq purge``. Threads whose running turn ended unseen (a worker killed between its commit and
the release) are released (``broker.threads.sweep``).
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import redis

from .keys import Keys
from .reviews import expire_reviews
from .streams import entry_id_key
from .tenants import sweep_caps
from .text import as_text
from .threads import sweep as sweep_threads

__all__ = ["FORGET_PAGE", "FORGET_PAGES", "Janitor", "SweepReport", "trim_floor", "trim_stream"]

log = logging.getLogger("baton.janitor")

FORGET_PAGE = 1000
"""Runs-index entries (and cancelled-set members) checked per round trip of a sweep."""
FORGET_PAGES = 10
"""Pages of the runs index one sweep checks at most, per partition."""


def trim_floor(client: redis.Redis, stream: str) -> str | None:
    """The id below which ``stream`` holds only acknowledged history, or None if unknown."""
    try:
        groups: Any = client.xinfo_groups(stream)
    except redis.ResponseError:
        return None  # no such stream
    if not groups:
        return None
    floors: list[str] = []
    for g in groups:
        ms, seq = entry_id_key(as_text(g["last-delivered-id"]))
        floors.append(f"{ms}-{seq + 1}")  # the last delivered entry too, unless it is pending
        if int(g["pending"]) > 0:
            summary: Any = client.xpending(stream, as_text(g["name"]))
            if summary["pending"] and summary["min"] is not None:
                floors.append(as_text(summary["min"]))
    floor = min(floors, key=entry_id_key)
    return None if entry_id_key(floor) <= (0, 1) else floor


def trim_stream(client: redis.Redis, stream: str) -> int:
    """Trim acknowledged history of one task stream by MINID; return how many entries went."""
    floor = trim_floor(client, stream)
    if floor is None:
        return 0
    removed: Any = client.xtrim(stream, minid=floor, approximate=False)
    return int(removed)


@dataclass(slots=True)
class SweepReport:
    """What one sweep removed."""

    trimmed: dict[str, int] = field(default_factory=dict)
    results_trimmed: int = 0
    runs_forgotten: int = 0
    cancelled_forgotten: int = 0
    reviews_expired: int = 0
    threads_released: int = 0
    tenant_runs_started: int = 0
    """Queued runs of capped tenants started (ends a crash hid, caps raised)."""

    @property
    def total(self) -> int:
        """Everything removed, summed."""
        return (sum(self.trimmed.values()) + self.results_trimmed + self.runs_forgotten + self.cancelled_forgotten
                + self.reviews_expired + self.threads_released + self.tenant_runs_started)


class Janitor:
    """Periodic clean-up of a deployment's streams and indexes.

    ``streams`` limits stream trimming to those task streams (a worker sweeps its own role's, so a
    least-privilege ACL user suffices; a list is kept as given, so streams its reader adds later,
    such as a new tenant's, are swept too); ``None`` sweeps every task stream under the prefix.
    ``reviews``: also fail runs whose deadline passed in review (``expire_reviews``); a worker's
    janitor does it only for a role with review, whose ACL user alone may touch the review keys.
    """

    def __init__(
        self,
        client: redis.Redis,
        keys: Keys,
        streams: Sequence[str] | None = None,
        *,
        interval_s: float = 60.0,
        reviews: bool = True,
    ) -> None:
        self.client = client
        self.keys = keys
        self.streams = streams
        self.interval_s = interval_s
        self.reviews = reviews
        # the first sweep comes after one to one and a half intervals: workers started together spread out
        self._next = time.monotonic() + random.uniform(1.0, 1.5) * interval_s
        self._runs_cursor: dict[int, float] = {}  # per partition: the score the runs index was read up to

    def task_streams(self) -> list[str]:
        """The task streams this janitor trims."""
        if self.streams is not None:
            return list(self.streams)
        found = self.client.scan_iter(match=self.keys.stream_pattern(), count=1000, _type="stream")
        return sorted(as_text(k) for k in found)

    def maybe_sweep(self) -> SweepReport | None:
        """Sweep if the interval has passed (0 or less disables it); None when it did not sweep.

        Never raises on Redis trouble (connection lost, timeout, an error reply such as OOM): the
        failure is logged and the sweep is tried again one interval later.
        """
        if self.interval_s <= 0 or time.monotonic() < self._next:
            return None
        self._next = time.monotonic() + self.interval_s
        try:
            return self.sweep()
        except (redis.RedisError, OSError) as exc:
            log.warning("janitor sweep failed (%s: %s); retrying in %.0fs", type(exc).__name__, exc, self.interval_s)
            return None

    def sweep(self, *, now: float | None = None) -> SweepReport:
        """Trim every task stream, old results, and index entries of expired runs."""
        now = time.time() if now is None else now
        report = SweepReport()
        for stream in self.task_streams():
            n = trim_stream(self.client, stream)
            if n:
                report.trimmed[stream] = n
        kept = self.keys.retention
        if kept.results_retention_s > 0:
            min_id = f"{int((now - kept.results_retention_s) * 1000)}-0"
            for p in range(self.keys.partitions):
                report.results_trimmed += int(self.client.xtrim(self.keys.results(p), minid=min_id,
                                                                approximate=False))
        if kept.record_ttl_s > 0:
            for p in range(self.keys.partitions):
                report.runs_forgotten += self._forget_runs(p, now - kept.record_ttl_s)
        report.cancelled_forgotten = sum(self._forget_cancelled(p) for p in range(self.keys.partitions))
        if self.reviews:
            report.reviews_expired = expire_reviews(self.client, self.keys, now=now)
        report.threads_released = sweep_threads(self.client, self.keys)
        report.tenant_runs_started = sweep_caps(self.client, self.keys)
        if report.total:
            log.info("janitor: trimmed %s, %d old results, forgot %d runs and %d cancellations, failed %d runs "
                     "whose deadline passed in review, released %d threads and started %d queued tenant runs",
                     report.trimmed or "nothing", report.results_trimmed, report.runs_forgotten,
                     report.cancelled_forgotten, report.reviews_expired, report.threads_released,
                     report.tenant_runs_started)
        return report

    def _forget_runs(self, partition: int, older_than: float) -> int:
        """Drop index entries of runs created before ``older_than`` whose record has expired.

        Reads the old end of the index in pages, at most :data:`FORGET_PAGES` per sweep, going on
        from where the last sweep stopped (by score) and starting over once it reaches
        ``older_than``. Runs still alive (queued or running longer than ``record_ttl_s``) are stepped
        over, not re-read every sweep: a sweep's cost is bounded whatever the backlog or history.
        """
        key = self.keys.runs(partition)
        forgotten = 0
        for _ in range(FORGET_PAGES):
            after = self._runs_cursor.get(partition)
            lo = "-inf" if after is None else f"({after!r}"
            rows: Any = self.client.zrangebyscore(key, lo, older_than, start=0, num=FORGET_PAGE, withscores=True)
            if len(rows) < FORGET_PAGE:
                self._runs_cursor.pop(partition, None)  # the end of the old runs: start over next time
            else:
                self._runs_cursor[partition] = float(rows[-1][1])
            old = [as_text(member) for member, _ in rows]
            if old:
                pipe = self.client.pipeline(transaction=False)
                for run_id in old:
                    pipe.exists(self.keys.run(run_id))
                gone = [run_id for run_id, exists in zip(old, pipe.execute(), strict=True) if not exists]
                if gone:
                    self.client.zrem(key, *gone)
                forgotten += len(gone)
            if len(rows) < FORGET_PAGE:
                break
        return forgotten

    def _forget_cancelled(self, partition: int) -> int:
        key = self.keys.cancelled(partition)
        forgotten = 0
        cursor: Any = 0
        while True:
            cursor, members = self.client.sscan(key, cursor, count=FORGET_PAGE)
            if members:
                pipe = self.client.pipeline(transaction=False)
                for member in members:
                    pipe.exists(self.keys.run(as_text(member)))
                gone = [m for m, exists in zip(members, pipe.execute(), strict=True) if not exists]
                if gone:
                    forgotten += int(self.client.srem(key, *gone))
            if not int(cursor):
                return forgotten
