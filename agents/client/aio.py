"""The asyncio client: the same methods as ``baton.Client``, awaitable.

It speaks ``redis.asyncio`` natively for everything it reads: records, listings, waits (blocking
reads of the run's event log) and events, with no thread held. The writes that are one atomic
step on the broker's synchronous path (submit, with its backlog check; cancel; review decisions;
fork and replay) and the trace and scratchpad views run that same code in a worker thread, over a
synchronous connection made on first use, so there is one submit path for every caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, TypeVar

from baton.agents.settings import Settings
from baton.broker import AsyncRedis, PadEntry, RunRecord, connect_async
from baton.broker.events import aiter_events, aread_events
from baton.broker.runs import alist_runs, arun_record, arun_records
from baton.broker.tenants import tenant_run_ids
from baton.broker.threads import ThreadInfo
from baton.client import POLL_S, BaseClient, BaseRun, Client, Run, RunInfo, outcome
from baton.protocol import Budget, Priority, RunStatus, ThreadPolicy
from baton.protocol.events import Event, is_terminal
from baton.protocol.schedules import Overlap, Schedule
from baton.protocol.webhooks import Delivery

__all__ = ["AsyncClient", "AsyncRun"]

T = TypeVar("T")


class AsyncClient(BaseClient):
    """``baton.Client`` for asyncio code."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, tenant: str = "") -> None:
        super().__init__(url, settings=settings, tenant=tenant)
        self.aredis: AsyncRedis = connect_async(self.settings.redis_url, socket_timeout=POLL_S + 10)
        self._sync: Client | None = None

    async def close(self) -> None:
        """Close the connections."""
        await self.aredis.aclose()
        if self._sync is not None:
            self._sync.close()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _in_thread(self, call: Callable[[Client], T]) -> T:
        """Run ``call`` on the synchronous client (made on first use) in a worker thread."""
        if self._sync is None:
            self._sync = Client(settings=self.settings, tenant=self.tenant)
        return await asyncio.to_thread(call, self._sync)

    async def submit(self, task: str, *, workflow: str | None = None, deadline: float | None = None,
                     metadata: Mapping[str, str] | None = None, run_id: str | None = None,
                     budget: Budget | None = None, priority: Priority = "interactive",
                     idempotency_key: str | None = None, webhook: str | None = None,
                     thread: str | None = None, thread_policy: ThreadPolicy | None = None) -> AsyncRun:
        """Start a run (see ``Client.submit``)."""
        run = await self._in_thread(lambda c: c.submit(task, workflow=workflow, deadline=deadline, metadata=metadata,
                                                       run_id=run_id, budget=budget, priority=priority,
                                                       idempotency_key=idempotency_key, webhook=webhook,
                                                       thread=thread, thread_policy=thread_policy))
        return AsyncRun(self, run.id)

    async def thread(self, thread_id: str) -> ThreadInfo | None:
        """A thread (see ``Client.thread``)."""
        return await self._in_thread(lambda c: c.thread(thread_id))

    async def threads(self, *, limit: int = 50) -> list[ThreadInfo]:
        """The most recently active threads (see ``Client.threads``)."""
        return await self._in_thread(lambda c: c.threads(limit=limit))

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread (see ``Client.delete_thread``)."""
        return await self._in_thread(lambda c: c.delete_thread(thread_id))

    async def run(self, run_id: str) -> AsyncRun:
        """An existing run; ``RunNotFound`` when there is none."""
        run = AsyncRun(self, run_id)
        await run.record()
        return run

    async def runs(self, *, status: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The newest runs, newest first (see ``Client.runs``)."""
        wanted, window = self._window(status, limit)
        if self.tenant:
            ids = await self._in_thread(lambda c: tenant_run_ids(c.redis, c.keys, self.tenant, window))
        else:
            ids = await alist_runs(self.aredis, self.keys, window)
        return self._select(await arun_records(self.aredis, self.keys, ids), wanted, limit)

    async def add_schedule(self, name: str, cron: str, *, task: str, workflow: str = "", overlap: Overlap = "skip",
                           catchup_s: float = 60.0) -> Schedule:
        """Create or replace a cron schedule (see ``Client.add_schedule``)."""
        return await self._in_thread(lambda c: c.add_schedule(name, cron, task=task, workflow=workflow,
                                                              overlap=overlap, catchup_s=catchup_s))

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        return await self._in_thread(Client.schedules)

    async def pause_schedule(self, name: str) -> bool:
        """Stop firing ``name``; whether it exists."""
        return await self._in_thread(lambda c: c.pause_schedule(name))

    async def resume_schedule(self, name: str) -> bool:
        """Fire ``name`` again from its next tick; whether it exists."""
        return await self._in_thread(lambda c: c.resume_schedule(name))

    async def delete_schedule(self, name: str) -> bool:
        """Delete ``name``; whether it existed."""
        return await self._in_thread(lambda c: c.delete_schedule(name))

    async def signal(self, run_id: str, name: str, data: Any = None) -> bool:
        """Send signal ``name`` with ``data`` to ``run_id`` (see ``Client.signal``)."""
        return await self._in_thread(lambda c: c.signal(run_id, name, data))

    async def failed_webhooks(self, limit: int = 100) -> list[Delivery]:
        """Failed webhook deliveries (see ``Client.failed_webhooks``)."""
        return await self._in_thread(lambda c: c.failed_webhooks(limit))

    async def resend_webhook(self, run_id: str) -> bool:
        """Send a run's webhook again (see ``Client.resend_webhook``)."""
        return await self._in_thread(lambda c: c.resend_webhook(run_id))


class AsyncRun(BaseRun):
    """A handle on one run, for asyncio code."""

    def __init__(self, client: AsyncClient, run_id: str) -> None:
        super().__init__(run_id)
        self.client = client

    async def _on_run(self, call: Callable[[Run], T]) -> T:
        return await self.client._in_thread(lambda c: call(Run(c, self.id)))

    async def record(self) -> RunRecord:
        """The run record."""
        return self._found(await arun_record(self.client.aredis, self.client.keys, self.id), self.client.tenant)

    async def status(self) -> RunStatus:
        """Where the run stands now."""
        return (await self.record()).status

    async def wait(self, timeout: float | None = None) -> str:
        """The result once the run ends, or ``RunFailed``, ``RunCancelled``, ``TimeoutError``."""
        deadline, after = self._deadline(timeout), "$"
        while True:
            record = await self.record()
            if (result := outcome(record)) is not None:
                return result
            block_ms = self._block_ms(deadline, timeout, record.status)
            for event_id, event in await aread_events(self.client.aredis, self.client.keys, self.id, after=after,
                                                      block_ms=block_ms):
                after = event_id
                if is_terminal(event):
                    break

    async def events(self, after: str | None = None, *, follow: bool = True) -> AsyncIterator[tuple[str, Event]]:
        """The run's events (see ``Run.events``)."""
        async for item in aiter_events(self.client.aredis, self.client.keys, self.id, after=after, follow=follow):
            yield item

    async def cancel(self) -> str | None:
        """Cancel the run; return its status before, or None."""
        return await self._on_run(Run.cancel)

    async def scratchpads(self) -> dict[str, list[PadEntry]]:
        """Every agent's scratchpad entries in this run."""
        return await self._on_run(Run.scratchpads)

    async def trace(self) -> Any:
        """The run's message flow hop by hop."""
        return await self._on_run(Run.trace)

    async def approve(self, output: str | None = None) -> None:
        """Approve the run's pending human review."""
        await self._on_run(lambda r: r.approve(output))

    async def reject(self, reason: str) -> None:
        """Reject the run's pending human review."""
        await self._on_run(lambda r: r.reject(reason))

    async def fork(self, from_role: str, task: str | None = None) -> AsyncRun:
        """A new run forked from this one at ``from_role``."""
        return AsyncRun(self.client, (await self._on_run(lambda r: r.fork(from_role, task))).id)

    async def replay(self) -> AsyncRun:
        """A new run with this run's inputs, from the start."""
        return AsyncRun(self.client, (await self._on_run(Run.replay)).id)
