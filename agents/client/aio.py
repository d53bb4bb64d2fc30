"""The asyncio client: the same methods as ``baton.Client``, awaitable.

Waiting and following events use ``redis.asyncio`` (blocking stream reads, no thread held);
the short one-round-trip calls (submit, cancel, records, reviews, forks) run the synchronous
broker functions in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping
from typing import Any

from baton.broker import AsyncRedis, connect_async
from baton.broker.events import aiter_events, aread_events
from baton.client import Client, Run, RunInfo, outcome
from baton.protocol import Budget, Priority, RunStatus
from baton.protocol.events import Event, is_terminal
from baton.protocol.schedules import Overlap, Schedule

__all__ = ["AsyncClient", "AsyncRun"]

_POLL_S = 1.0


class AsyncClient:
    """``baton.Client`` for asyncio code."""

    def __init__(self, url: str | None = None) -> None:
        self._sync = Client(url)
        self.settings = self._sync.settings
        self.keys = self._sync.keys
        self.aredis: AsyncRedis = connect_async(self.settings.redis_url, socket_timeout=_POLL_S + 10)

    async def close(self) -> None:
        """Close both connections."""
        await self.aredis.aclose()
        self._sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(self, task: str, *, workflow: str | None = None, deadline: float | None = None,
                     metadata: Mapping[str, str] | None = None, run_id: str | None = None,
                     budget: Budget | None = None, priority: Priority = "interactive",
                     idempotency_key: str | None = None) -> AsyncRun:
        """Start a run (see ``Client.submit``)."""
        run = await asyncio.to_thread(self._sync.submit, task, workflow=workflow, deadline=deadline,
                                      metadata=metadata, run_id=run_id, budget=budget, priority=priority,
                                      idempotency_key=idempotency_key)
        return AsyncRun(self, run)

    async def run(self, run_id: str) -> AsyncRun:
        """An existing run; ``RunNotFound`` when there is none."""
        return AsyncRun(self, await asyncio.to_thread(self._sync.run, run_id))

    async def runs(self, *, status: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The newest runs, newest first (see ``Client.runs``)."""
        return await asyncio.to_thread(self._sync.runs, status=status, limit=limit)

    async def add_schedule(self, name: str, cron: str, *, task: str, workflow: str = "", overlap: Overlap = "skip",
                           catchup_s: float = 60.0) -> Schedule:
        """Create or replace a cron schedule (see ``Client.add_schedule``)."""
        return await asyncio.to_thread(self._sync.add_schedule, name, cron, task=task, workflow=workflow,
                                       overlap=overlap, catchup_s=catchup_s)

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        return await asyncio.to_thread(self._sync.schedules)

    async def pause_schedule(self, name: str) -> bool:
        """Stop firing ``name``; whether it exists."""
        return await asyncio.to_thread(self._sync.pause_schedule, name)

    async def resume_schedule(self, name: str) -> bool:
        """Fire ``name`` again from its next tick; whether it exists."""
        return await asyncio.to_thread(self._sync.resume_schedule, name)

    async def delete_schedule(self, name: str) -> bool:
        """Delete ``name``; whether it existed."""
        return await asyncio.to_thread(self._sync.delete_schedule, name)


class AsyncRun:
    """A handle on one run, for asyncio code."""

    def __init__(self, client: AsyncClient, run: Run) -> None:
        self.client = client
        self._run = run
        self.id = run.id

    def __repr__(self) -> str:
        return f"AsyncRun({self.id!r})"

    async def record(self) -> dict[str, str]:
        """The run record."""
        return await asyncio.to_thread(self._run.record)

    async def status(self) -> RunStatus:
        """Where the run stands now."""
        return await asyncio.to_thread(self._run.status)

    async def wait(self, timeout: float | None = None) -> str:
        """The result once the run ends, or ``RunFailed``, ``RunCancelled``, ``TimeoutError``."""
        limit = None if timeout is None else time.monotonic() + timeout
        after = "$"
        while True:
            if (result := outcome(self.id, await self.record())) is not None:
                return result
            left = _POLL_S if limit is None else min(_POLL_S, limit - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"run {self.id} still {await self.status()} after {timeout} s")
            for event_id, event in await aread_events(self.client.aredis, self.client.keys, self.id, after=after,
                                                      block_ms=max(1, int(left * 1000))):
                after = event_id
                if is_terminal(event):
                    break

    async def events(self, after: str | None = None, *, follow: bool = True) -> AsyncIterator[tuple[str, Event]]:
        """The run's events (see ``Run.events``)."""
        async for item in aiter_events(self.client.aredis, self.client.keys, self.id, after=after, follow=follow):
            yield item

    async def cancel(self) -> str | None:
        """Cancel the run; return its status before, or None."""
        return await asyncio.to_thread(self._run.cancel)

    async def scratchpads(self) -> dict[str, list[dict[str, Any]]]:
        """Every agent's scratchpad entries in this run."""
        return await asyncio.to_thread(self._run.scratchpads)

    async def trace(self) -> Any:
        """The run's message flow hop by hop."""
        return await asyncio.to_thread(self._run.trace)

    async def approve(self, output: str | None = None) -> None:
        """Approve the run's pending human review."""
        await asyncio.to_thread(self._run.approve, output)

    async def reject(self, reason: str) -> None:
        """Reject the run's pending human review."""
        await asyncio.to_thread(self._run.reject, reason)

    async def fork(self, from_role: str, task: str | None = None) -> AsyncRun:
        """A new run forked from this one at ``from_role``."""
        return AsyncRun(self.client, await asyncio.to_thread(self._run.fork, from_role, task))

    async def replay(self) -> AsyncRun:
        """A new run with this run's inputs, from the start."""
        return AsyncRun(self.client, await asyncio.to_thread(self._run.replay))
