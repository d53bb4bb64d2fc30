"""What a code role's handler decided: where its work goes next.

A handler returns a ``str`` (:class:`Next`: to the role's ``next`` with its handoff template, or
the run's result when the role is last) or one of these, or calls ``ctx.handoff`` /
``ctx.fan_out`` / ``ctx.finish`` / ``ctx.fail``, which set the context's outcome and return it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from baton.protocol.fields import Name

__all__ = ["FanOut", "Fail", "Finish", "Handoff", "Next", "Outcome", "as_outcome"]


class Next(msgspec.Struct, frozen=True, tag="next"):
    """Go on as the role's workflow says (``next``, ``routes``), with ``text`` as the role's output."""

    text: str


class Handoff(msgspec.Struct, frozen=True, tag="handoff"):
    """Hand ``task`` to role ``role`` (any role of the workflow), whatever ``next`` says."""

    role: Name
    task: str


class FanOut(msgspec.Struct, frozen=True, tag="fan_out"):
    """Send each of ``tasks`` to role ``role``'s pool as a part; a ``join`` role gathers them."""

    role: Name
    tasks: Annotated[Sequence[str], msgspec.Meta(min_length=1, max_length=64)]


class Finish(msgspec.Struct, frozen=True, tag="finish"):
    """End the run now with ``result``."""

    result: str


class Fail(msgspec.Struct, frozen=True, tag="fail"):
    """Fail the run with ``reason`` (the message is dead-lettered, not retried)."""

    reason: str


Outcome = Next | Handoff | FanOut | Finish | Fail
OUTCOMES = (Next, Handoff, FanOut, Finish, Fail)


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
