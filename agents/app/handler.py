"""Running a handler once: ``outcome = await run_handler(handler, ctx, task)``.

Async handlers run on the worker's event loop; plain functions run in a thread (their ``ctx``
calls go back to the loop). The value is turned into an ``Outcome`` (``BadReturn`` when it cannot
be). Exceptions propagate to the driver, which asks :func:`baton.agents.app.failures.is_transient`
whether to retry and :func:`~baton.agents.app.failures.failure_reason` what to dead-letter with.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable
from typing import Any

from .context import Context
from .outcome import Outcome, as_outcome
from .waits import Routed

__all__ = ["run_handler"]


async def run_handler(handler: Callable[..., Any], ctx: Context, task: str, *, timeout: float | None = None) -> Outcome:
    """Run ``handler(ctx, task)`` (cancelled after ``timeout`` seconds when given: ``TimeoutError``)."""
    ctx.bind_loop(asyncio.get_running_loop())
    where = f"handler of role {ctx.role!r}"

    async def call() -> Any:
        if inspect.iscoroutinefunction(handler):
            value = await handler(ctx, task)
        else:
            value = await asyncio.to_thread(handler, ctx, task)
        while inspect.isawaitable(value):
            value = await value
        return value

    try:
        value = await (asyncio.wait_for(call(), timeout) if timeout else call())
    except Routed as routed:  # a wait past its timeout took its declared route
        return routed.outcome
    return as_outcome(value, ctx.outcome, where)
