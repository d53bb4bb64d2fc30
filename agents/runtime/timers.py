"""Durable timers and signals in the runtime: a handler's suspension.

A code role's ``ctx.sleep`` / ``ctx.wait_for`` that has no journaled result yet raises
:class:`Suspend` (a ``BaseException``: a handler's ``except Exception`` does not swallow it); the
handle stage sorts the item into ``batch.waiting`` and the wait stage parks it
(``broker.timers.park_waits``). The worker's ``broker.timers.Timers`` wakes the role's due waits on its
reclaim timer (``BATON_RECLAIM_INTERVAL_S``); ``baton scheduler`` wakes every role's.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["Suspend", "WaitRequest"]


@dataclass(frozen=True, slots=True)
class WaitRequest:
    """What a suspended handler waits for: journal call ``seq`` (fingerprint ``fp``) of hop ``hop``,
    a ``sleep`` or a ``signal`` named ``name``, due at ``until`` (None: no timeout)."""

    kind: Literal["sleep", "signal"]
    seq: int
    fp: str
    hop: str
    name: str = ""
    until: float | None = None


class Suspend(BaseException):  # noqa: N818 - control flow, like asyncio.CancelledError
    """Raised through a handler that waits: its task is parked and the handler ends here."""

    def __init__(self, wait: WaitRequest) -> None:
        super().__init__(f"waiting ({wait.kind} {wait.name})".strip())
        self.wait = wait
