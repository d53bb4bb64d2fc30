"""The Redis Cluster hash tag of each key partition.

The tag of partition ``N`` of ``P`` is ``{p<N>}`` when its CRC16 hash slot already falls in the
middle of the partition's share of the 16384 slots (``N*16384/P`` up to ``(N+1)*16384/P``), else
``{p<N>.<salt>}`` with the smallest salt that lands there. A cluster whose primaries own equal
contiguous slot ranges (what ``redis-cli --cluster create`` makes) thus holds the partitions
evenly: with ``P`` a multiple of the primary count, every primary serves ``P/primaries`` of them.
"""

from __future__ import annotations

from functools import lru_cache

from redis.crc import REDIS_CLUSTER_HASH_SLOTS, key_slot

__all__ = ["partition_tags", "slot_share"]


def slot_share(partition: int, partitions: int) -> range:
    """The hash slots whose middle half partition ``partition`` of ``partitions`` aims its tag at."""
    lo = partition * REDIS_CLUSTER_HASH_SLOTS // partitions
    hi = (partition + 1) * REDIS_CLUSTER_HASH_SLOTS // partitions
    quarter = (hi - lo) // 4
    return range(lo + quarter, hi - quarter) if quarter else range(lo, hi)


@lru_cache(maxsize=64)
def partition_tags(partitions: int) -> tuple[str, ...]:
    """The hash tag (without braces) of every partition: ``p<N>`` or ``p<N>.<salt>`` (see the module doc)."""
    tags: list[str] = []
    for n in range(partitions):
        share, tag, salt = slot_share(n, partitions), f"p{n}", 0
        while partitions > 1 and key_slot(tag.encode()) not in share:
            tag, salt = f"p{n}.{salt}", salt + 1
        tags.append(tag)
    return tuple(tags)
