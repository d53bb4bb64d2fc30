"""Priority lanes: which of a role's lane streams a read serves first.

Every role has an ``interactive`` and a ``batch`` stream per partition (``Keys.lane_streams``).
A read of new work (``read_by_lane``) serves waiting interactive work before batch work, except
for a fixed share of the slots (``BATON_BATCH_SHARE``, default 10%) that goes to batch work while
both lanes have work, so a batch backlog never starves. A read that found interactive work takes no
more batch work than that share (an interactive hop shares its model call with few batch tasks); a
read that found none fills its slots with batch work, up to ``BATON_BATCH_LANE_SIZE`` when set (a
smaller model call that an interactive task arriving meanwhile waits behind). When neither lane has
work the read blocks once over every lane's stream, so a lone task of either lane is picked up at once.
A blocking read that came back short left every lane empty: there is no backlog to order, so the
next read blocks at once over every lane (one round trip per lone task, not three) until a read
fills up again (``BatchShare.drained``).

``read_by_lane`` takes any stream list (a role's streams of every partition, or one partition's
lanes for a per-partition reader): the lane of each stream is parsed from its key.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .keys import DEFAULT_LANE, Keys

if TYPE_CHECKING:
    from .entry import Entry

__all__ = ["DEFAULT_BATCH_SHARE", "BatchShare", "ReadNew", "read_by_lane", "refill_streams", "split_lanes"]

DEFAULT_BATCH_SHARE = 0.1
"""The fraction of read slots batch work gets while interactive work is waiting too."""

ReadNew = Callable[[Sequence[str], int, "int | None"], "list[Entry]"]
"""Read up to ``count`` new entries from some streams, blocking up to ``block_ms`` (None: not at all)."""


class BatchShare:
    """The batch lane's slot credit of one consumer: ``share`` of each read's slots accrue, the batch
    entries read spend them. The credit is capped at one read's worth (plus one slot), so a long
    spell without batch work does not let a later batch backlog jump the interactive queue."""

    def __init__(self, share: float = DEFAULT_BATCH_SHARE) -> None:
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"the batch share must be between 0 and 1, not {share}")
        self.share = share
        self.credit = 0.0
        self.drained = False
        """The last read blocked over every lane and emptied each one: no lane had a backlog."""

    def reserve(self, count: int) -> int:
        """Accrue one read's share of ``count`` slots; return the whole slots owed to batch work."""
        self.credit = min(self.credit + self.share * count, self.share * count + 1.0)
        return min(count, int(self.credit + 1e-9))  # 10 x 0.1 is one whole slot

    def spend(self, taken: int) -> None:
        """Count ``taken`` batch entries read against the credit."""
        self.credit = max(0.0, self.credit - taken)


def split_lanes(keys: Keys, streams: Sequence[str]) -> tuple[list[str], list[str]]:
    """``streams`` split into the interactive lane's and the others (keys that are no task
    stream, such as tool call streams, count as interactive)."""
    urgent: list[str] = []
    batch: list[str] = []
    for stream in streams:
        name = keys.parse_stream(stream)
        (urgent if name is None or name.lane == DEFAULT_LANE else batch).append(stream)
    return urgent, batch


def refill_streams(keys: Keys, streams: Sequence[str], entries: Sequence[Entry]) -> list[str] | None:
    """Where a read topping up ``entries`` (a lingering worker's second read) may look: only the
    interactive streams when ``entries`` hold interactive work beside a batch lane, so batch work
    does not join an interactive hop's model call; None when a plain ``read_by_lane`` is fine."""
    urgent, batch = split_lanes(keys, streams)
    if not batch or not urgent:
        return None
    mine = set(urgent)
    return urgent if any(e.stream in mine for e in entries) else None


def read_by_lane(read: ReadNew, keys: Keys, streams: Sequence[str], *, count: int, block_ms: int | None,
                 share: BatchShare, batch_count: int = 0) -> list[Entry]:
    """Up to ``count`` new entries of ``streams``: batch work's reserved share, then interactive
    work, then (when there was none) batch work in the slots left; when nothing waits, one blocking
    read over all. ``batch_count`` (0: ``count``) caps a read that holds batch work only, so an
    interactive task arriving meanwhile waits behind a shorter model call."""
    urgent, batch = split_lanes(keys, streams)
    batch_max = min(count, batch_count or count)
    if not urgent or not batch:
        return read(streams, count if urgent else batch_max, block_ms)
    if share.drained and block_ms is not None:
        return _read_all(read, streams, batch_max, block_ms, share)
    reserved = share.reserve(count)
    got = read(batch, reserved, None) if reserved else []
    batch_left = len(got) == reserved  # a short batch read means the batch lane is empty
    taken = len(got)
    if len(got) < count:
        got += read(urgent, count - len(got), None)
    if batch_left and len(got) == taken < batch_max:
        more = read(batch, batch_max - len(got), None)
        got += more
        taken += len(more)
    share.spend(taken)
    if not got and block_ms is not None:
        return _read_all(read, streams, batch_max, block_ms, share)
    if got:
        share.drained = False
    return got


def _read_all(read: ReadNew, streams: Sequence[str], count: int, block_ms: int, share: BatchShare) -> list[Entry]:
    """One read blocking over every lane; ``share.drained`` when it left each lane empty (each
    stream gave fewer than ``count``), so the next read may block at once too."""
    got = read(streams, count, block_ms)
    per_stream: dict[str, int] = {}
    for e in got:
        per_stream[e.stream] = per_stream.get(e.stream, 0) + 1
    share.drained = all(n < count for n in per_stream.values())
    return got
