"""The vocabulary of a run's life, spelled once: where a run or a review stands, which statuses end a
run, and the decisions a reviewer can take.

Python code imports these names; the Lua scripts get the same strings when they are loaded
(``broker.scripts.lua_constants`` renders them as the Lua table ``C``). The terminal events of a
run's log (``protocol.events.TERMINAL_EVENTS``) are the events tagged with a terminal status.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal, get_args

__all__ = ["DECISIONS", "TERMINAL_STATUSES", "Decision", "ReviewStatus", "RunStatus"]


class RunStatus(StrEnum):
    """Where a run stands; its record's ``status`` field holds the value."""

    QUEUED = "queued"
    RUNNING = "running"
    REVIEW = "review"
    """Parked: a role's output waits for a human decision (``broker.reviews``)."""
    WAITING = "waiting"
    """Parked: a code role's handler sleeps or waits for a signal (``broker.waits``)."""
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        """Whether the run has ended (nothing will change its status again)."""
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES: frozenset[RunStatus] = frozenset({RunStatus.DONE, RunStatus.FAILED, RunStatus.CANCELLED})
"""The statuses a run ends in (a record's ``status`` string tests ``in`` it as well)."""

Decision = Literal["approve", "reject"]
"""What a reviewer decides: the output goes on (``approve``) or the run fails (``reject``)."""

DECISIONS: tuple[Decision, ...] = get_args(Decision)
"""The decisions, as values."""


class ReviewStatus(StrEnum):
    """Where a review stands; its hash's ``status`` field holds the value."""

    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"

    @classmethod
    def after(cls, decision: Decision) -> ReviewStatus:
        """The status a review has once ``decision`` is taken."""
        return cls.APPROVED if decision == "approve" else cls.REJECTED
