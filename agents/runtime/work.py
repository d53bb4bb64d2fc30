"""The work of a batch as it passes the stages of a role: the typed work item and the Stage protocol.

A driver (``Worker`` for one role, ``MultiRoleWorker`` across roles) turns the entries it read
into a :class:`Batch` and runs the role's :class:`~baton.agents.runtime.stages.Pipeline` over it:

    admit -> review -> guard -> gather -> prepare -> budget -> generate | handle
          -> settle -> hand off -> reject -> retry -> commit

Each stage is a small object that reads and writes the batch: it narrows ``work`` (the items
still to run), fills ``done`` / ``rejected`` / ``failed`` (what became of the model call or the
handler) and queues ``commits`` (handoffs, halts and dead letters, each with what to do with its
outcome), which the commit stage writes in one round trip. Stages receive the role's shared
services (``RoleRuntime``) when they are built; none reaches into another's private members.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from ...broker import Entry, Handoff, Memory, Outcome
from ...protocol import Task
from ..backends import Generation
from .steps import StepContext

__all__ = ["Batch", "Commit", "Stage", "WorkItem"]


@dataclass(slots=True)
class WorkItem:
    """One admitted task on its way through the stages."""

    entry: Entry
    task: Task
    prompt: str = ""
    started: float = 0.0
    ctx: StepContext | None = None
    """Per-task state of the role's declared steps (tool outcomes, shared memory, batch info)."""
    memory: list[Memory] | None = None
    """The memory the prompt shows (read early with the cancelled flags for run-scoped memory)."""
    span: Any = None
    """The hop's OpenTelemetry span (None when tracing is off)."""
    decision: Any = None
    """A code role's outcome (what its handler decided), for the hand-off stage."""
    tokens: int = 0
    """Tokens a code role's model calls generated for this item so far."""
    calls: int = 0
    """Model calls a code role's handler made for this item so far (journal replays not counted)."""
    notes: dict[str, Any] | None = None
    """A code role's handler's own scratchpad notes (``ctx.scratchpad``: ``meta.scratchpad``)."""
    context: Any = None
    """A code role's handler's context (the runner keeps it here; ``notes`` come from it)."""
    retry_after: float = 0.0
    """Seconds a handler asked to wait before its retry (``baton.Retry(delay=...)``)."""
    announced: bool = False
    """Its ``hop_started`` event was written with the guard's read (else the prepare stage writes it)."""
    reserve: bool = True
    """Whether the model call is reserved against the run's budget first (the guard's read says;
    False for a run without model limits)."""
    usage_at_commit: bool = False
    """The budget stage skipped its reservation: its usage is counted by its commit (``HandOff``)."""
    owner: str | None = None
    """The tenant its run's record names (the guard's read; None: not read), which ``task.tenant`` must match."""


@dataclass(slots=True)
class Commit:
    """One handoff to commit, and what to do with its outcome once committed."""

    handoff: Handoff
    then: Callable[[Outcome], None] | None = None


@dataclass(slots=True)
class Batch:
    """What one read brought and what has become of it so far."""

    entries: list[Entry]
    work: list[WorkItem] = field(default_factory=list)
    """The items still to run (admitted, not halted, gathered, within budget)."""
    done: list[tuple[WorkItem, Generation]] = field(default_factory=list)
    """Items whose model call (or handler) produced their output."""
    rejected: list[tuple[WorkItem, str]] = field(default_factory=list)
    """Items to dead-letter now, with the reason (their runs fail)."""
    failed: list[WorkItem] = field(default_factory=list)
    """Items left pending for a retry (their redelivery counts one attempt)."""
    waiting: list[tuple[WorkItem, Any]] = field(default_factory=list)
    """Items whose handler sleeps or waits for a signal, with what it waits for (``timers.WaitRequest``)."""
    commits: list[Commit] = field(default_factory=list)
    backoff: float | None = None
    """Seconds to back off before reading again (set when items were left pending)."""
    called: list[WorkItem] = field(default_factory=list)
    """The items that reserved a model call (the budget stage settles them after the call)."""
    tenant_holds: list[Any] = field(default_factory=list)
    """The tenants' rate-limit reservations of this batch's model call (settled after it)."""


class Stage(Protocol):
    """One step of a role's pipeline: reads and updates ``batch`` (Redis outages propagate as
    ``BrokerError``; the driver rides them out and runs the stages again)."""

    def __call__(self, batch: Batch) -> None: ...
