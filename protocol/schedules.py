"""A schedule as stored: which workflow runs on which task on which cron, and its policies."""

from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from .fields import Name

__all__ = ["OVERLAPS", "Overlap", "Schedule"]

Overlap = Literal["skip", "buffer_one", "allow"]
OVERLAPS: tuple[Overlap, ...] = ("skip", "buffer_one", "allow")


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A named cron schedule of runs.

    ``overlap``: what a tick does while the schedule's previous run has not ended: ``skip`` it,
    ``buffer_one`` (keep the first such tick and start it once the run ends; later ones are
    skipped) or ``allow`` (start it anyway). ``catchup_s``: after downtime, missed ticks at most
    this old fire once each; older ones are skipped. ``cron`` is in UTC (5 fields, or 6 with
    seconds last).
    """

    name: Name
    cron: Annotated[str, msgspec.Meta(min_length=1, max_length=200)]
    workflow: str = ""
    task: Annotated[str, msgspec.Meta(min_length=1)]
    overlap: Overlap = "skip"
    catchup_s: Annotated[float, msgspec.Meta(ge=0)] = 60.0
    paused: bool = False
    created_at: float = 0.0
    tenant: str = ""
    """The tenant the schedule and its runs belong to (empty: none)."""
