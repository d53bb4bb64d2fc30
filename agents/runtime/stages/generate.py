"""The generate stage of a template role: one batched model call through model outages.

``ModelCalls`` rides out the endpoint's outages (breaker, backoff, outage budget) and sorts each
prompt: generated (``done``), refused or outlasted by the outage (``rejected``), or failed for no
known reason or held at shutdown (``failed``, left pending for a retry).
"""

from __future__ import annotations

from collections.abc import Sequence

from ..modelcall import Member, call_model
from ..outages import BatchOutcome
from ..role import RoleRuntime
from ..work import Batch

__all__ = ["Generate", "sort_outcome"]


def sort_outcome(out: BatchOutcome, members: Sequence[tuple[Batch, Member]]) -> None:
    """Put each prompt of ``members`` (by index, as called) in its batch's ``done``, ``rejected``
    or ``failed``."""
    for i, g in sorted(out.generated.items()):
        batch, (_, item) = members[i]
        batch.done.append((item, g))
    for i, reason in sorted(out.rejected.items()):
        batch, (_, item) = members[i]
        batch.rejected.append((item, reason))
    for i in sorted(out.poisoned + out.held):
        batch, (_, item) = members[i]
        batch.failed.append(item)


class Generate:
    """The model call of one role's batch."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        if not batch.work:
            return
        backend = rt.backend
        assert backend is not None, "the role's backend is loaded before its first batch"
        members = [(batch, (rt, item)) for item in batch.work]
        out = rt.model_calls.run(
            lambda todo: call_model(backend, [members[i][1] for i in todo], rt.max_new_tokens,
                                    stream_tokens=rt.settings.stream_tokens),
            [item.task.deadline for item in batch.work],
            rt.held([item.entry for item in batch.work], [item.task.run_id for item in batch.work]))
        sort_outcome(out, members)
