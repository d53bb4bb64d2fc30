"""Per-run budgets: the most tokens, model calls and tool calls one run may use.

A ``Budget`` rides on the run record (``broker/budget.py`` writes and enforces it); every field
is optional (``None``: no limit on that count) and at least 1 when set.
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["Budget", "BudgetLimit"]

BudgetLimit = Annotated[int, msgspec.Meta(ge=1, le=2**53, description="The most the run may use (at least 1).")]


class Budget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Limits of one run: ``max_tokens`` generated tokens, ``max_model_calls`` model calls (one per
    prompt), ``max_tool_calls`` tool calls, summed over every hop of the run."""

    max_tokens: BudgetLimit | None = None
    max_model_calls: BudgetLimit | None = None
    max_tool_calls: BudgetLimit | None = None

    def limits(self) -> dict[str, int]:
        """The limits that are set, by field name."""
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not None}

    def over(self, defaults: Budget | None) -> Budget:
        """This budget with each unset limit taken from ``defaults`` (a workflow's ``[budget]``)."""
        if defaults is None:
            return self
        return Budget(**{**defaults.limits(), **self.limits()})

    @classmethod
    def of(cls, max_tokens: int | None = None, max_model_calls: int | None = None,
           max_tool_calls: int | None = None) -> Budget:
        """A budget from loose values, checked against the rules (``msgspec.ValidationError``)."""
        given = {"max_tokens": max_tokens, "max_model_calls": max_model_calls, "max_tool_calls": max_tool_calls}
        return msgspec.convert({k: v for k, v in given.items() if v is not None}, cls)
