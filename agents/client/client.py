"""The Python client: start runs, wait for them, follow their events, step in.

::

    from baton import Client

    client = Client()                                   # REDIS_URL, else redis://localhost:6379/0
    run = client.submit("Explain the importance of supervised learning.")
    for event_id, event in run.events():                # live, resumable with after=event_id
        print(event_id, event)
    print(run.wait(timeout=60))                         # the result, or RunFailed / RunCancelled

The client speaks to Redis only through ``baton.broker``; it needs no worker of its own.
``BaseClient`` and ``BaseRun`` hold what ``Client``/``Run`` and the asyncio ``AsyncClient``/``AsyncRun``
(``baton.aio``) share: the settings and key names, the workflow lookup, how a record reads as an
outcome, how a listing is filtered and how a wait is timed; the subclasses only do the I/O.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, TypeAlias

from baton.agents import schedules as _schedules
from baton.agents import webhooks as _webhooks
from baton.agents.settings import Settings
from baton.agents.submit import submit_run
from baton.agents.workflow import named
from baton.broker import Keys, PadEntry, Redis, RunRecord, connect, list_runs, run_record, run_records, run_scratchpads
from baton.broker import threads as _threads
from baton.broker import webhooks as _webhooks_store
from baton.broker.cancel import cancel_run
from baton.broker.cancel import delete_thread as _delete_thread
from baton.broker.events import iter_events, read_events
from baton.broker.fork import ForkOptions, fork_run, replay_run
from baton.broker.reviews import decide
from baton.broker.schedules import delete_schedule, list_schedules
from baton.broker.tenants import tenant_run_ids
from baton.broker.threads import ThreadInfo
from baton.broker.timers import SignalRefused, send_signal
from baton.errors import RunCancelled, RunEnded, RunFailed, RunNotFound
from baton.protocol import Budget, Priority, RunStatus, ThreadPolicy
from baton.protocol.events import Event, is_terminal
from baton.protocol.schedules import Overlap, Schedule
from baton.protocol.threads import scoped_thread
from baton.protocol.webhooks import Delivery
from baton.refusals import public_refusals

__all__ = ["BaseClient", "BaseRun", "Client", "Run", "RunInfo", "outcome"]

POLL_S = 1.0
"""Longest block of one event read while waiting (a record check follows each)."""

RunInfo: TypeAlias = RunRecord
"""One run as listed: where it stands, what it was given and produced, and its ``usage`` (the
broker's typed run record)."""


def outcome(record: RunRecord) -> str | None:
    """The result of a finished run; ``None`` while it runs; ``RunFailed``/``RunCancelled`` when it ended so."""
    if record.status is RunStatus.DONE:
        return record.result
    if record.status is RunStatus.FAILED:
        raise RunFailed(record.run_id, record.error, record.role)
    if record.status is RunStatus.CANCELLED:
        raise RunCancelled(record.run_id)
    return None


class BaseClient:
    """What ``Client`` and ``AsyncClient`` share: one deployment's settings and key names (with its
    retention), the workflow lookup and the listing filter. With ``tenant``, runs are submitted as
    that tenant's (its quota applies) and only its runs are listed and found (at the Redis level this
    is a courtesy, not a boundary: the Redis user's ACL is, ``baton acl --tenant``)."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, tenant: str = "") -> None:
        self.settings = settings or Settings.from_env(redis_url=url)
        self.keys: Keys = self.settings.keys()
        self.tenant = tenant or self.settings.tenant


    @staticmethod
    def _signal_refused(run_id: str, exc: SignalRefused) -> RunNotFound | RunEnded:
        """The public error of a refused signal."""
        return RunNotFound(run_id) if exc.status == 404 else RunEnded(run_id, exc.reason)

    @staticmethod
    def _window(status: str | None, limit: int) -> tuple[RunStatus | None, int]:
        """The status asked for, and how many of the newest runs to read to find ``limit`` of them."""
        wanted = RunStatus(status) if status else None
        return wanted, limit if wanted is None else max(limit * 10, 200)

    def _select(self, records: Sequence[RunRecord | None], wanted: RunStatus | None, limit: int) -> list[RunInfo]:
        """The first ``limit`` existing records (of the client's tenant, if any) with status ``wanted``
        (any when None)."""
        return [r for r in records if r is not None and (wanted is None or r.status is wanted)
                and (not self.tenant or r.tenant == self.tenant)][:limit]


class BaseRun:
    """What ``Run`` and ``AsyncRun`` share: the run's id, and how a wait for it is timed."""

    def __init__(self, run_id: str) -> None:
        self.id = run_id

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.id!r})"

    def _found(self, record: RunRecord | None, tenant: str = "") -> RunRecord:
        if record is None or (tenant and record.tenant != tenant):
            raise RunNotFound(self.id)
        return record

    @staticmethod
    def _deadline(timeout: float | None) -> float | None:
        return None if timeout is None else time.monotonic() + timeout

    def _block_ms(self, deadline: float | None, timeout: float | None, status: RunStatus) -> int:
        """How long the next event read may block; ``TimeoutError`` once ``deadline`` passed."""
        left = POLL_S if deadline is None else min(POLL_S, deadline - time.monotonic())
        if left <= 0:
            raise TimeoutError(f"run {self.id} still {status} after {timeout} s")
        return max(1, int(left * 1000))


class Client(BaseClient):
    """A connection to one baton deployment (its Redis, ``BATON_PREFIX`` and partitions)."""

    def __init__(self, url: str | None = None, *, settings: Settings | None = None, tenant: str = "") -> None:
        super().__init__(url, settings=settings, tenant=tenant)
        self.redis: Redis = connect(self.settings.redis_url, socket_timeout=POLL_S + 10)

    def close(self) -> None:
        """Close the connection."""
        self.redis.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @public_refusals
    def submit(self, task: str, *, workflow: str | None = None, deadline: float | None = None,
               metadata: Mapping[str, str] | None = None, run_id: str | None = None,
               budget: Budget | None = None, priority: Priority = "interactive",
               idempotency_key: str | None = None, webhook: str | None = None,
               thread: str | None = None, thread_policy: ThreadPolicy | None = None) -> Run:
        """Start a run of ``workflow`` (default: ``BATON_WORKFLOW``, else the seed chain) on ``task``.

        ``deadline`` is in seconds from now; ``metadata`` is kept on the run record; ``budget``
        limits the run's tokens, model calls and tool calls (unset limits come from the workflow's
        ``[budget]``); ``priority`` is the run's lane (``batch`` work waits behind ``interactive``
        work; a bad value raises ``ProtocolError``). The caller's current OpenTelemetry span, if
        any, becomes the parent of the run's hops. With ``idempotency_key``, a submit that repeats
        one already made with that key (within its retention, even concurrently) returns the run
        that one started and starts nothing. With ``webhook``, baton POSTs the run's end to that URL,
        signed (``BATON_WEBHOOK_ALLOW`` must allow it, else ``ProtocolError``; the workflow's
        ``webhook`` is the default). With ``thread``, the run is a turn of that conversation: it
        sees the thread's earlier turns as history, and while another turn runs ``thread_policy``
        (default: the workflow's, else ``enqueue``) says what happens: ``reject`` (``ThreadBusy``),
        ``enqueue``, ``interrupt`` or ``rollback``.
        """
        wf = named(workflow or self.settings.workflow, client=self.redis, keys=self.keys)
        return Run(self, submit_run(self.redis, self.keys, self.settings, wf, task, deadline=deadline,
                                    metadata=metadata, run_id=run_id, budget=budget, priority=priority,
                                    idempotency_key=idempotency_key, webhook=webhook, tenant=self.tenant,
                                    thread=thread, thread_policy=thread_policy))

    def run(self, run_id: str) -> Run:
        """An existing run; ``RunNotFound`` when there is none."""
        run = Run(self, run_id)
        run.record()
        return run

    def runs(self, *, status: str | None = None, limit: int = 20) -> list[RunInfo]:
        """The newest runs, newest first (only those with ``status`` when given)."""
        wanted, window = self._window(status, limit)
        ids = tenant_run_ids(self.redis, self.keys, self.tenant, window) if self.tenant else list_runs(
            self.redis, self.keys, window)
        return self._select(run_records(self.redis, self.keys, ids), wanted, limit)

    def thread(self, thread_id: str) -> ThreadInfo | None:
        """A thread (the client's tenant's, if any): its running turn, waiting runs and finished
        turns; None when there is none."""
        stored = scoped_thread(self.tenant, thread_id)
        return _threads.seen_by(_threads.get_thread(self.redis, self.keys, stored), self.tenant)

    def threads(self, *, limit: int = 50) -> list[ThreadInfo]:
        """The most recently active threads (the client's tenant's, if any), newest first."""
        return _threads.tenant_threads(self.redis, self.keys, self.tenant, limit)

    def delete_thread(self, thread_id: str) -> bool:
        """Delete a thread and cancel its running and waiting turns; whether it existed."""
        return _delete_thread(self.redis, self.keys, scoped_thread(self.tenant, thread_id)) is not None

    def add_schedule(self, name: str, cron: str, *, task: str, workflow: str = "", overlap: Overlap = "skip",
                     catchup_s: float = 60.0) -> Schedule:
        """Create or replace a cron schedule (UTC; 5 fields, or 6 with seconds last) that runs ``workflow`` on
        ``task``, fired by ``baton scheduler`` (each tick one run); ``ProtocolError`` when it is wrong.
        ``overlap``: ``skip``, ``buffer_one`` or ``allow`` while the last run goes on; ``catchup_s``:
        after downtime, missed ticks at most this old fire once each."""
        return _schedules.add_schedule(self.redis, self.keys, name, cron, task=task, workflow=workflow,
                                       overlap=overlap, catchup_s=catchup_s)

    def schedules(self) -> list[Schedule]:
        """Every schedule, by name."""
        return list_schedules(self.redis, self.keys)

    def pause_schedule(self, name: str) -> bool:
        """Stop firing ``name``; whether it exists."""
        return _schedules.set_paused(self.redis, self.keys, name, True) is not None

    def resume_schedule(self, name: str) -> bool:
        """Fire ``name`` again from its next tick; whether it exists."""
        return _schedules.set_paused(self.redis, self.keys, name, False) is not None

    def delete_schedule(self, name: str) -> bool:
        """Delete ``name`` (its runs stay); whether it existed."""
        return delete_schedule(self.redis, self.keys, name)

    def signal(self, run_id: str, name: str, data: Any = None) -> bool:
        """Send signal ``name`` with ``data`` (any JSON value) to ``run_id``, for its ``ctx.wait_for(name)``:
        True when a waiting run took it now, False when it is kept until a wait asks. ``RunNotFound``
        for no such run, ``RunEnded`` for a run that has ended."""
        self.run(run_id)  # RunNotFound (also for another tenant's run)
        try:
            return send_signal(self.redis, self.keys, run_id, name, data)
        except SignalRefused as exc:
            raise self._signal_refused(run_id, exc) from None

    def failed_webhooks(self, limit: int = 100) -> list[Delivery]:
        """Completion webhook deliveries that failed, newest first."""
        return _webhooks_store.failed(self.redis, self.keys, limit)

    def resend_webhook(self, run_id: str) -> bool:
        """Send ``run_id``'s webhook again now; whether the run has one."""
        return _webhooks.resend(self.redis, self.keys, run_id) is not None


class Run(BaseRun):
    """A handle on one run."""

    def __init__(self, client: Client, run_id: str) -> None:
        super().__init__(run_id)
        self.client = client

    def record(self) -> RunRecord:
        """The run record (status, role, result, error, timings, usage...)."""
        return self._found(run_record(self.client.redis, self.client.keys, self.id), self.client.tenant)

    def status(self) -> RunStatus:
        """Where the run stands now."""
        return self.record().status

    def wait(self, timeout: float | None = None) -> str:
        """Block until the run ends; return its result, or raise ``RunFailed``, ``RunCancelled``,
        ``TimeoutError``. Waits on the run's event log (no busy polling)."""
        deadline, after = self._deadline(timeout), "$"
        while True:
            record = self.record()
            if (result := outcome(record)) is not None:
                return result
            block_ms = self._block_ms(deadline, timeout, record.status)
            for event_id, event in read_events(self.client.redis, self.client.keys, self.id, after=after,
                                               block_ms=block_ms):
                after = event_id
                if is_terminal(event):
                    break

    def events(self, after: str | None = None, *, follow: bool = True) -> Iterator[tuple[str, Event]]:
        """The run's events as ``(event id, event)``, from the start or after event id ``after``;
        live until the terminal event (``follow=False``: only those written so far)."""
        yield from iter_events(self.client.redis, self.client.keys, self.id, after=after, follow=follow)

    def cancel(self) -> str | None:
        """Cancel the run (workers stop it at its next hop); return its status before, or None."""
        return cancel_run(self.client.redis, self.client.keys, self.id)

    def scratchpads(self) -> dict[str, list[PadEntry]]:
        """Every agent's scratchpad entries in this run, by agent, in order."""
        return run_scratchpads(self.client.redis, self.client.keys, self.id)

    def trace(self) -> Any:
        """The run's message flow hop by hop (a ``baton.agents.ops.trace.RunTrace``)."""
        from baton.agents.ops.trace import build_trace

        return build_trace(self.client.redis, self.client.keys, self.id)

    def approve(self, output: str | None = None) -> None:
        """Approve the run's pending human review, handing off ``output`` instead when given."""
        decide(self.client.redis, self.client.keys, self.id, "approve", output)

    def reject(self, reason: str) -> None:
        """Reject the run's pending human review: the run fails with ``reason``."""
        decide(self.client.redis, self.client.keys, self.id, "reject", reason=reason)

    def fork(self, from_role: str, task: str | None = None) -> Run:
        """A new run that copies this one up to ``from_role``'s hop and continues from there
        (with ``task`` as that hop's input when given)."""
        c = self.client
        options = ForkOptions(max_hops=c.settings.max_hops)
        return Run(c, fork_run(c.redis, c.keys, self.id, from_role, task, options=options))

    def replay(self) -> Run:
        """A new run with this run's workflow and input, from the start."""
        c = self.client
        return Run(c, replay_run(c.redis, c.keys, self.id, options=ForkOptions(max_hops=c.settings.max_hops)))
