"""One stream entry as a reader sees it (:class:`Entry`): the type the stream readers, the lane
scheduler and the cluster fan-in share, so none of them imports another for it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Entry", "entry_id_key"]


@dataclass(frozen=True, slots=True)
class Entry:
    """One stream entry as read: where it came from, its raw ``msg`` field, delivery count."""

    stream: str
    id: str
    data: bytes | None
    fields: dict[bytes, bytes] = field(default_factory=dict)
    deliveries: int = 1


def entry_id_key(entry_id: str) -> tuple[int, int]:
    """Sort key of a stream entry id (``ms-seq``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
