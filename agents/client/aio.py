"""The asyncio client: the same methods as ``baton.Client``, awaitable.

It speaks ``redis.asyncio`` natively, with no thread and no synchronous connection, for runs
(submit, with its backlog and quota checks, idempotency keys, threads and webhooks; records,
listings, waits, events, scratchpads, traces; cancel, review decisions, fork and replay), threads,
signals, schedules, failed webhooks and their resends: each broker step is written once as an op
(``baton.broker.drive``) that the sync client runs on ``redis.Redis`` and this one awaits on
``redis.asyncio``, so there is one submit path (``baton.agents.submit.submit_run_op``), one trace
(``baton.agents.ops.trace.build_trace_op``) and one call of each Lua step for both.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any

from baton.agents.schedules import aadd_schedule, aset_paused
from baton.agents.settings import Settings
from baton.agents.submit import asubmit_run
from baton.agents.webhooks import aresend
from baton.agents.workflow.loader import named_op
from baton.broker import AsyncRedis, PadEntry, RunRecord, connect_async
from baton.broker import threads as _threads
from baton.broker.cancel import acancel_run, adelete_thread
from baton.broker.drive import arun
from baton.broker.events import aiter_events, aread_events
from baton.broker.fork import ForkOptions, afork_run, areplay_run
from baton.broker.reviews import adecide
from baton.broker.runs import alist_runs, arun_record, arun_records, arun_scratchpads
from baton.broker.schedules import adelete_schedule, alist_schedules
from baton.broker.tenants import atenant_run_ids
from baton.broker.threads import ThreadInfo
from baton.broker.timers import SignalRefused, asend_signal
from baton.broker.webhooks import afailed
from baton.client import POLL_S, BaseClient, BaseRun, RunInfo, outcome
from baton.protocol import Budget, Priority, RunStatus, ThreadPolicy
from baton.protocol.events import Event, is_terminal
from baton.protocol.schedules import Overlap, Schedule
from baton.protocol.threads import scoped_thread
from baton.protocol.webhooks import Delivery
from baton.refusals import apublic_refusals

__all__ = ["AsyncClient", "AsyncRun"]


class AsyncClient(BaseClient):
    """``baton.Client`` for asyncio code."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, tenant: str = "") -> None:
        super().__init__(url, settings=settings, tenant=tenant)
        self.aredis: AsyncRedis = connect_async(self.settings.redis_url, socket_timeout=POLL_S + 10)

    async def close(self) -> None:
        """Close the connection."""
        await self.aredis.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @apublic_refusals
    async def submit(self, task: str, *, workflow: str | None = None, deadline: float | None = None,
                     metadata: Mapping[str, str] | None = None, run_id: str | None = None,
                     budget: Budget | None = None, priority: Priority = "interactive",
                     idempotency_key: str | None = None, webhook: str | None = None,
                     thread: str | None = None, thread_policy: ThreadPolicy | None = None) -> AsyncRun:
        """Start a run (see ``Client.submit``): the same submit, awaited."""
        wf = await arun(named_op(workflow or self.settings.workflow, keys=self.keys), self.aredis)
        return AsyncRun(self, await asubmit_run(self.aredis, self.keys, self.settings, wf, task, deadline=deadline,
                                                metadata=metadata, run_id=run_id, budget=budget, priority=priority,
                                                idempotency_key=idempotency_key, webhook=webhook, tenant=self.tenant,
                                                thread=thread, thread_policy=thread_policy))

    async def thread(self, thread_id: str) -> ThreadInfo | None:
        """A thread (see ``Client.thread``)."""
        stored = scoped_thread(self.tenant, thread_id)
        return _threads.seen_by(await arun(_threads.get_thread_op(self.keys, stored), self.aredis), self.tenant)

    async def threads(self, *, limit: int = 50) -> list[ThreadInfo]:
        """The most recently active threads (see ``Client.threads``)."""
        return await arun(_threads.tenant_threads_op(self.keys, self.tenant, limit), self.aredis)

    async def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread (see ``Client.delete_thread``)."""
        return await adelete_thread(self.aredis, self.keys, scoped_thread(self.tenant, thread_id)) is not None

    async def run(self, run_id: str) -> AsyncRun:
        """An existing run; ``RunNotFound`` when there is none."""
        run = AsyncRun(self, run_id)
        await run.record()
        return run

    async def runs(self, *, status: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The newest runs, newest first (see ``Client.runs``)."""
        wanted, window = self._window(status, limit)
        if self.tenant:
            ids = await atenant_run_ids(self.aredis, self.keys, self.tenant, window)
        else:
            ids = await alist_runs(self.aredis, self.keys, window)
        return self._select(await arun_records(self.aredis, self.keys, ids), wanted, limit)

    async def add_schedule(self, name: str, cron: str, *, task: str, workflow: str = "", overlap: Overlap = "skip",
                           catchup_s: float = 60.0) -> Schedule:
        """Create or replace a cron schedule (see ``Client.add_schedule``)."""
        return await aadd_schedule(self.aredis, self.keys, name, cron, task=task, workflow=workflow, overlap=overlap,
                                   catchup_s=catchup_s)

    async def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        return await alist_schedules(self.aredis, self.keys)

    async def pause_schedule(self, name: str) -> bool:
        """Stop firing ``name``; whether it exists."""
        return await aset_paused(self.aredis, self.keys, name, True) is not None

    async def resume_schedule(self, name: str) -> bool:
        """Fire ``name`` again from its next tick; whether it exists."""
        return await aset_paused(self.aredis, self.keys, name, False) is not None

    async def delete_schedule(self, name: str) -> bool:
        """Delete ``name``; whether it existed."""
        return await adelete_schedule(self.aredis, self.keys, name)

    async def signal(self, run_id: str, name: str, data: Any = None) -> bool:
        """Send signal ``name`` with ``data`` to ``run_id`` (see ``Client.signal``)."""
        await self.run(run_id)  # RunNotFound (also for another tenant's run)
        try:
            return await asend_signal(self.aredis, self.keys, run_id, name, data)
        except SignalRefused as exc:
            raise self._signal_refused(run_id, exc) from None

    async def failed_webhooks(self, limit: int = 100) -> list[Delivery]:
        """Failed webhook deliveries (see ``Client.failed_webhooks``)."""
        return await afailed(self.aredis, self.keys, limit)

    async def resend_webhook(self, run_id: str) -> bool:
        """Send a run's webhook again (see ``Client.resend_webhook``)."""
        return await aresend(self.aredis, self.keys, run_id) is not None


class AsyncRun(BaseRun):
    """A handle on one run, for asyncio code."""

    def __init__(self, client: AsyncClient, run_id: str) -> None:
        super().__init__(run_id)
        self.client = client

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
        return await acancel_run(self.client.aredis, self.client.keys, self.id)

    async def scratchpads(self) -> dict[str, list[PadEntry]]:
        """Every agent's scratchpad entries in this run."""
        return await arun_scratchpads(self.client.aredis, self.client.keys, self.id)

    async def trace(self) -> Any:
        """The run's message flow hop by hop (see ``Run.trace``)."""
        from baton.agents.ops.trace import abuild_trace

        return await abuild_trace(self.client.aredis, self.client.keys, self.id)

    async def approve(self, output: str | None = None) -> None:
        """Approve the run's pending human review."""
        await adecide(self.client.aredis, self.client.keys, self.id, "approve", output)

    async def reject(self, reason: str) -> None:
        """Reject the run's pending human review."""
        await adecide(self.client.aredis, self.client.keys, self.id, "reject", reason=reason)

    async def fork(self, from_role: str, task: str | None = None) -> AsyncRun:
        """A new run forked from this one at ``from_role``."""
        c = self.client
        return AsyncRun(c, await afork_run(c.aredis, c.keys, self.id, from_role, task,
                                           options=ForkOptions(max_hops=c.settings.max_hops)))

    async def replay(self) -> AsyncRun:
        """A new run with this run's inputs, from the start."""
        c = self.client
        options = ForkOptions(max_hops=c.settings.max_hops)
        return AsyncRun(c, await areplay_run(c.aredis, c.keys, self.id, options=options))
