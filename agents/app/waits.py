"""Durable waits of code roles: ``await ctx.sleep(seconds)`` and ``await ctx.wait_for(name, timeout=...)``.

Both are journaled calls (``agents/app/journal.py``), like ``ctx.generate`` or ``ctx.step``. The
first time a handler reaches one, nothing is recorded yet: the handler is suspended
(``agents/runtime/timers.Suspend``), its task parked in Redis (``broker/timers.py``) and the worker
goes on with other work. When the timer runs out (a ticker: the role's workers, or ``baton
scheduler``) or the signal comes (``POST /v1/runs/{id}/signal``, ``client.signal``, ``baton signal``),
the result is journaled and the task goes back on its stream; the handler runs again from the start,
every earlier call (model, tool, step, wait) returns its recorded result without running again, and
the wait returns. A completed sleep is never slept again. Keep what happens before a wait
deterministic (or inside ``ctx.step``), as with any journaled handler.

Timeouts, as in Temporal (``workflow.wait_condition(..., timeout=...)`` raises ``TimeoutError``) and
Hatchet's durable waits: a ``wait_for`` past its timeout raises :class:`WaitTimeout`, which fails the
run with a clear reason unless the handler catches it; ``on_timeout="role"`` declares a route
instead: the run goes on to that role with the task's text.
"""

from __future__ import annotations

import math
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

import msgspec

from ...broker.journal import CallKind
from ...broker.timers import WaitResult
from ...protocol import Task
from ...protocol.fields import Name
from ..runtime.timers import Suspend, WaitRequest
from .journal import HopCalls, fingerprint
from .outcome import Handoff, Outcome

T = TypeVar("T")


class Context(Protocol):
    """What a wait uses of the handler's ``Context`` (``agents/app/context.py``)."""

    @property
    def calls(self) -> HopCalls: ...

    @property
    def task(self) -> Task: ...

    def handoff(self, role: str, task: str) -> Handoff: ...

    async def journaled(self, kind: CallKind, inputs: tuple[Any, ...], call: Callable[[], Awaitable[T]],
                        decode_as: Any) -> T: ...

__all__ = ["Routed", "WaitTimeout", "sleep", "wait_for"]


class WaitTimeout(Exception):  # noqa: N818 - the name users catch, like TimeoutError
    """``ctx.wait_for(name, timeout=...)``: no signal ``name`` came within ``timeout`` seconds."""

    def __init__(self, name: str, timeout: float) -> None:
        super().__init__(f"no signal {name!r} came within its timeout of {timeout:g}s")
        self.name = name
        self.timeout = timeout


class Routed(BaseException):  # noqa: N818 - control flow: the handler ends with this outcome
    """A wait took its declared route (``on_timeout``): ``run_handler`` returns ``outcome``."""

    def __init__(self, outcome: Outcome) -> None:
        super().__init__("routed")
        self.outcome = outcome


def _needs_journal(ctx: Context, what: str) -> None:
    if not ctx.calls.journal.enabled:
        raise RuntimeError(f"ctx.{what} needs the call journal (BATON_JOURNAL=1, the default)")


async def sleep(ctx: Context, seconds: float) -> None:
    """Sleep ``seconds`` durably (see the module)."""
    seconds = float(seconds)
    if not math.isfinite(seconds):
        raise ValueError(f"ctx.sleep: seconds must be a finite number, not {seconds!r}")
    if seconds <= 0:
        return
    _needs_journal(ctx, "sleep")
    calls = ctx.calls

    async def park() -> None:
        raise Suspend(WaitRequest("sleep", calls.seq, fingerprint("sleep", seconds), calls.hop,
                                  until=time.time() + seconds))

    await ctx.journaled("sleep", (seconds,), park, None)


async def wait_for(ctx: Context, name: str, timeout: float | None = None, on_timeout: str | None = None) -> Any:
    """The data of the signal ``name`` sent to this run (buffered ones first, oldest first)."""
    try:
        msgspec.convert(name, Name)
    except msgspec.ValidationError as exc:
        raise ValueError(f"ctx.wait_for: bad signal name {name!r}: {exc}") from None
    if timeout is not None:
        timeout = float(timeout)
        if not (math.isfinite(timeout) and timeout > 0):
            raise ValueError(f"ctx.wait_for: timeout must be a positive number of seconds, not {timeout!r}")
    _needs_journal(ctx, "wait_for")
    calls = ctx.calls

    async def park() -> WaitResult:
        until = None if timeout is None else time.time() + timeout
        raise Suspend(WaitRequest("signal", calls.seq, fingerprint("wait", name, timeout), calls.hop, name=name,
                                  until=until))

    got: WaitResult = await ctx.journaled("wait", (name, timeout), park, WaitResult)
    if got.timed_out:
        if on_timeout:
            raise Routed(ctx.handoff(on_timeout, ctx.task.task))
        raise WaitTimeout(name, timeout or 0.0)
    return got.data
