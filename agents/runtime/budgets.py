"""The worker's side of per-run budgets: reserve before the model call, settle after it.

``BudgetGate.reserve`` asks the run records (``baton.broker.budget``, one round trip per batch)
for one model call and ``max_new_tokens`` tokens per task of a run with limits (a task whose
``reserve`` is False, of a run without model limits, asks nothing: no round trip, and its usage
is counted with its commit instead); a task whose run would pass a limit,
or whose tool steps were already refused (``StepContext.budget_exceeded``), is taken out of the
batch with the one-line reason, and the worker dead-letters it (its run fails; no handoff is
written). ``BudgetGate.settle`` then gives back what each call did not use and adds the real
token count to the run's accounting; tasks whose call did not happen give their reservation back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, TypeVar

from ...broker import Keys, Redis
from ...broker.budget import ModelCall, reserve_model_calls, settle_model_calls
from ...protocol import Task
from ..backends import Generation
from ..workflow.spec import RoleSpec

__all__ = ["BudgetGate"]


class _Item(Protocol):
    task: Task
    ctx: Any
    reserve: bool


W = TypeVar("W", bound=_Item)


class BudgetGate:
    """Budget checks and accounting of one role's model calls."""

    def __init__(self, client: Redis, keys: Keys, spec: RoleSpec, max_new_tokens: int) -> None:
        self.client = client
        self.keys = keys
        self.role = spec.role
        self.max_new_tokens = spec.max_new_tokens or max_new_tokens

    def reserve(self, work: Sequence[W]) -> tuple[list[W], list[tuple[W, str]]]:
        """Reserve each task's model call; return the tasks that may call and those refused, with
        the reason (``budget exceeded: 5 of 4 model calls``)."""
        refused: list[tuple[W, str]] = [(w, w.ctx.budget_exceeded) for w in work
                                        if w.ctx is not None and w.ctx.budget_exceeded]
        asking = [w for w in work if (w.ctx is None or not w.ctx.budget_exceeded) and w.reserve]
        reasons = reserve_model_calls(self.client, self.keys, [self._call(w, self.max_new_tokens) for w in asking])
        refused += [(w, reason) for w, reason in zip(asking, reasons, strict=True) if reason]
        out = {id(w) for w, _ in refused}
        return [w for w in work if id(w) not in out], refused

    def settle(self, work: Sequence[W], done: Sequence[tuple[W, Generation]], model: str) -> None:
        """End the reservations of ``work``: the ``done`` ones count their real tokens (of ``model``),
        the rest give theirs back."""
        used = {id(w): g.new_tokens for w, g in done}
        settle_model_calls(self.client, self.keys, [
            self._call(w, used.get(id(w), 0), model=model, called=id(w) in used) for w in work])

    def _call(self, w: _Item, tokens: int, *, model: str = "", called: bool = True) -> ModelCall:
        return ModelCall(run_id=w.task.run_id, msg_id=w.task.id, role=self.role, model=model, tokens=tokens,
                         called=called)
