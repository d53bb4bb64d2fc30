"""What a code role's handler decided: where its work goes next (the hand-off stage maps these).

A handler returns a ``str`` (:class:`Next`: to the role's ``next`` with its handoff template, or
the run's result when the role is last) or one of these; ``baton.Context`` sets them for
``ctx.handoff`` / ``ctx.fan_out`` / ``ctx.finish`` / ``ctx.fail``. They live here, below
``agents/app`` (which re-exports them), because the worker's hand-off stage matches on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import msgspec

from ...protocol.fields import Name

__all__ = ["OUTCOMES", "FanOut", "Fail", "Finish", "Handoff", "Next", "Outcome"]


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
