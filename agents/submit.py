"""Starting a run: the one submit path of the client, the HTTP API and the CLI.

:func:`submit_run` checks the entry role's backlog, builds the run's first ``Task`` (the hop
limit from the submitter's ``BATON_MAX_HOPS``, the caller's trace span, the priority lane, the
deadline) and writes it with the run record in one MULTI (``baton.broker.runs.submit``). Each
caller only translates what it is given (a request body, options, keyword arguments) and the
errors it gets back (``ProtocolError``, ``broker.backpressure.SubmitRefused``).

An ``idempotency_key`` makes a submit safe to retry: the first submit with a key sets it to the run
it starts in the same atomic step that writes the run (``broker/idempotency.py``: a ``WATCH``ed
MULTI, or inside a thread's submit step), so a submitter killed at any point leaves either no key or
a key and its run; every later or racing submit with that key, while it is kept (as long as run
records, at most ``BATON_MARKER_TTL_S``), gets that run's id back and starts nothing.

A failover does not fail a submit: while Redis answers ``CLUSTERDOWN``, ``TRYAGAIN``,
``READONLY``, ``MASTERDOWN`` or ``LOADING``, or the connection is lost, each step is retried with
an exponential back-off (50 ms doubling to 1 s, jittered) for up to ``BATON_SUBMIT_RETRY_S``
seconds, then the last error is raised. The run id is chosen once and a retry first looks for the
record an earlier attempt may have written, so a retried submit never starts the run twice. With
``BATON_WAIT_REPLICAS`` set, a submit returns only once that many replicas hold the run (``WAIT``,
``broker.replication.confirm_run``), or raises ``ReplicasBehind`` after ``BATON_WAIT_TIMEOUT_MS``
(the run is written, and so is its idempotency key: submitting again with it confirms the run
instead of starting another).

A ``webhook`` URL (else the workflow's ``webhook``) is checked against ``BATON_WEBHOOK_ALLOW`` first
(``agents/webhooks.py``, ``WebhookRefused``) and its delivery is stored before the run is written,
so no run that ends can miss it.

A ``thread`` makes the run a turn of that conversation (``broker/threads.py``): its id is chosen in
the thread's partition, and the thread's policy (``thread_policy``, default the workflow's) says what
happens while another turn runs; ``broker.threads.ThreadBusy`` when it refuses.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from ..broker import Keys, idempotency, threads
from ..broker.cluster import is_cluster
from ..broker.drive import Op, awaiting, blocking, pause
from ..broker.errors import BrokerError, OutOfMemoryError, TryAgainError, is_transient
from ..broker.replication import ReplicasBehind, ReplicaWait, confirm_op
from ..broker.runs import submit_op
from ..broker.tenants import check_quota_op
from ..protocol import Budget, Priority, ProtocolError, Task, ThreadPolicy, new_id
from ..protocol.threads import check_thread, scoped_thread
from .backpressure import check_submit_op
from .runtime.tracing import trace_fields
from .settings import Settings
from .webhooks import check_url, forget_run_op, watch_run_op
from .workflow.spec import Workflow

__all__ = ["asubmit_run", "new_task", "retrying_op", "submit_run", "submit_run_op"]

T = TypeVar("T")
_FIRST_BACKOFF_S = 0.05
_MAX_BACKOFF_S = 1.0


def new_task(wf: Workflow, text: str, settings: Settings, *, deadline: float | None = None,
             run_id: str | None = None, priority: Priority = "interactive",
             trace: Mapping[str, str] | None = None, tenant: str = "") -> Task:
    """The first task of a new run of ``wf`` on ``text``.

    ``deadline`` is in seconds from now; ``trace`` holds the W3C ``traceparent``/``tracestate`` the
    run's hops continue (default: the caller's current OpenTelemetry span, if any).
    """
    fields = trace_fields() if trace is None else trace
    return Task(run_id=run_id or new_id(), role=wf.entry, task=text, workflow=wf.name,
                deadline=None if deadline is None else time.time() + deadline, max_hops=settings.max_hops,
                priority=priority, traceparent=fields.get("traceparent", ""), tracestate=fields.get("tracestate", ""),
                tenant=tenant)


def retrying_op(attempt: Callable[[int], Op[T]], limit_s: float) -> Op[T]:
    """Run the op ``attempt(n)`` (``n`` = 0, 1, ...) until it returns, retrying Redis outages (a failover:
    ``is_transient`` errors other than OOM, which is backpressure) with back-off for ``limit_s`` seconds."""
    give_up = time.monotonic() + limit_s
    backoff = _FIRST_BACKOFF_S
    n = 0
    while True:
        try:
            return (yield from attempt(n))
        except Exception as exc:
            if not is_transient(exc) or isinstance(exc, OutOfMemoryError) or time.monotonic() >= give_up:
                raise
        yield pause(min(backoff * random.uniform(0.5, 1.0), max(0.0, give_up - time.monotonic())))
        backoff, n = min(backoff * 2, _MAX_BACKOFF_S), n + 1


def _confirm(keys: Keys, run_id: str, wait: ReplicaWait | None) -> Op[int | None]:
    """``confirm_run`` of ``run_id``; ``ReplicasBehind`` when it exists on fewer replicas than asked."""
    acked = yield from confirm_op(keys.run(run_id), keys.replica_probe(run_id), run_id, wait)
    if acked is not None and wait is not None and acked < wait.replicas:
        raise ReplicasBehind(run_id, acked, wait)
    return acked


def submit_run_op(keys: Keys, settings: Settings, wf: Workflow, text: str, *,
                  deadline: float | None = None, metadata: Mapping[str, str] | None = None,
                  run_id: str | None = None, budget: Budget | None = None, priority: Priority = "interactive",
                  trace: Mapping[str, str] | None = None, idempotency_key: str | None = None,
                  webhook: str | None = None, tenant: str = "", thread: str | None = None,
                  thread_policy: ThreadPolicy | None = None) -> Op[str]:
    """Start a run of ``wf`` on ``text`` (for ``tenant``, empty: none); return its id (an op: see
    :func:`submit_run`, its synchronous caller, and :func:`asubmit_run`, its asyncio one).

    Refused with ``broker.backpressure.SubmitRefused`` while the entry role is at its backlog limit
    or Redis is full, with ``ProtocolError`` when the task breaks the protocol's limits (nothing is
    written either way). ``budget``'s unset limits come from the workflow's ``[budget]``;
    ``metadata`` is kept on the run record. ``idempotency_key``: the run this key started, if any,
    instead of a new one (see the module). Failovers are retried and replicas waited for as the
    module says (``ReplicasBehind``). ``webhook``: POST the run's end there (see the module). A
    tenant whose token quota is used up is refused with ``broker.tenants.QuotaExceeded``; its
    idempotency keys are its own (another tenant's same key starts another run). ``thread``: the
    run is a turn of that thread, under ``thread_policy`` (default: the workflow's). See
    :func:`new_task` for the rest.
    """
    if thread is None and thread_policy is not None:
        raise ProtocolError("a thread policy needs a thread")
    if thread is not None:
        check_thread(thread, thread_policy)
        thread = scoped_thread(tenant, thread)  # a tenant's threads are its own
        if run_id is not None and keys.partition(run_id) != keys.thread_partition(thread):
            raise ProtocolError(f"run id {run_id} is not in the partition of thread {thread!r}")
        run_id = run_id or threads.thread_run_id(keys, thread)
    policy = thread_policy or wf.thread_policy
    claimed, partition, ttl = None, 0, keys.retention.marker_s
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= idempotency.MAX_KEY_LEN:
            raise ProtocolError(f"idempotency key must be 1 to {idempotency.MAX_KEY_LEN} characters")
        claimed = f"{tenant}/{idempotency_key}" if tenant else idempotency_key
        partition = keys.thread_partition(thread) if thread is not None else keys.partition(claimed)
        if thread is None and run_id is not None and keys.partition(run_id) != partition and (yield is_cluster):
            raise ProtocolError(f"run id {run_id} is not in the partition of its idempotency key (one slot)")
        run_id = run_id or idempotency.key_run_id(keys, claimed)
    new_run = run_id or new_id()
    hook = check_url(webhook or wf.webhook, settings.webhook_allow) if webhook or wf.webhook else None
    wait = ReplicaWait(settings.wait_replicas, settings.wait_timeout_ms) if settings.wait_replicas else None
    limit_s = settings.submit_retry_s

    def started_before(held: str) -> Op[str]:
        if wait is not None:
            yield from retrying_op(lambda _: _confirm(keys, held, wait), limit_s)
        return held

    if claimed is not None:
        key = claimed
        held = yield from retrying_op(lambda _: idempotency.held_op(keys, key, partition), limit_s)
        if held is not None and held != new_run:  # (our own id: a retried submit that had landed)
            return (yield from started_before(held))
    task = new_task(wf, text, settings, deadline=deadline, run_id=new_run, priority=priority, trace=trace,
                    tenant=tenant)

    def attempt(n: int) -> Op[str]:
        if n == 0:
            yield from check_submit_op(keys, settings, wf)
            yield from check_quota_op(keys, tenant)
        elif (yield from _confirm(keys, new_run, wait)) is not None:
            return new_run  # an earlier attempt wrote it
        if hook is not None:
            yield from watch_run_op(keys, new_run, hook)
        budget_ = wf.run_budget(budget)
        if thread is not None:
            yield from threads.submit_turn_op(keys, task, thread, policy, metadata=metadata, budget=budget_,
                                              idempotency=None if claimed is None else (claimed, ttl))
        elif claimed is not None:
            yield from idempotency.submit_once_op(keys, task, claimed, ttl, metadata=metadata, budget=budget_)
        else:
            yield from submit_op(keys, task, metadata=metadata, budget=budget_)
        if wait is not None and (yield from _confirm(keys, new_run, wait)) is None:
            raise TryAgainError(f"TRYAGAIN run {new_run} vanished before its replicas acknowledged it")
        return new_run

    try:
        return (yield from retrying_op(attempt, limit_s))
    except idempotency.KeyHeld as exc:  # a racing submit with the key wrote its run first
        if hook is not None:
            yield from _forget(keys, new_run)
        return (yield from started_before(exc.run_id))
    except Exception as exc:
        if hook is not None and not isinstance(exc, ReplicasBehind):
            yield from _forget(keys, new_run)  # (else it fails as "run not found" later)
        raise


def _forget(keys: Keys, run_id: str) -> Op[None]:
    """Drop ``run_id``'s webhook delivery after its submit failed (a broker error doing so is let be)."""
    with contextlib.suppress(BrokerError):
        yield from forget_run_op(keys, run_id)


submit_run = blocking(submit_run_op)
asubmit_run = awaiting(submit_run_op)
