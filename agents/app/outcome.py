"""What a code role's handler decided: where its work goes next.

A handler returns a ``str`` (:class:`Next`: to the role's ``next`` with its handoff template, or
the run's result when the role is last) or one of these, or calls ``ctx.handoff`` /
``ctx.fan_out`` / ``ctx.finish`` / ``ctx.fail``, which set the context's outcome and return it.
"""

from __future__ import annotations

from ..runtime.outcome import OUTCOMES, Fail, FanOut, Finish, Handoff, Next, Outcome

__all__ = ["BadReturn", "FanOut", "Fail", "Finish", "Handoff", "Next", "Outcome", "as_outcome"]
# The outcome Structs live in the runtime (its hand-off stage matches on them); the app re-exports them.


class BadReturn(TypeError):
    """A handler returned something that is not a ``str`` or an ``Outcome`` (a permanent failure)."""


def as_outcome(value: object, chosen: Outcome | None, where: str) -> Outcome:
    """The outcome of a handler that returned ``value`` after choosing ``chosen`` (``ctx.handoff``...)."""
    if isinstance(value, OUTCOMES):
        if chosen is not None and value != chosen:
            raise BadReturn(f"{where} chose {type(chosen).__name__} through ctx but returned {type(value).__name__}")
        return value
    if value is None and chosen is not None:
        return chosen
    if isinstance(value, str):
        if chosen is not None:
            raise BadReturn(f"{where} chose {type(chosen).__name__} through ctx and also returned a str; do one")
        return Next(value)
    raise BadReturn(f"{where} returned {type(value).__name__}; return a str or an Outcome "
                    "(Next, Handoff, FanOut, Finish, Fail)")
