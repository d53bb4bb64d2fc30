"""Starting a run: the one submit path of the client, the HTTP API and the CLI.

:func:`submit_run` checks the entry role's backlog, builds the run's first ``Task`` (the hop
limit from the submitter's ``BATON_MAX_HOPS``, the caller's trace span, the priority lane, the
deadline) and writes it with the run record in one MULTI (``baton.broker.runs.submit``). Each
caller only translates what it is given (a request body, options, keyword arguments) and the
errors it gets back (``ProtocolError``, ``broker.backpressure.SubmitRefused``).

An ``idempotency_key`` makes a submit safe to retry: the first submit with a key claims it for the
run it starts (``broker/idempotency.py``, one atomic ``SET NX``) and every later or racing submit
with that key, while it is kept (as long as run records, at most ``BATON_MARKER_TTL_S``), gets that
run's id back and starts nothing.

A failover does not fail a submit: while Redis answers ``CLUSTERDOWN``, ``TRYAGAIN``,
``READONLY``, ``MASTERDOWN`` or ``LOADING``, or the connection is lost, each step is retried with
an exponential back-off (50 ms doubling to 1 s, jittered) for up to ``BATON_SUBMIT_RETRY_S``
seconds, then the last error is raised. The run id is chosen once and a retry first looks for the
record an earlier attempt may have written, so a retried submit never starts the run twice. With
``BATON_WAIT_REPLICAS`` set, a submit returns only once that many replicas hold the run (``WAIT``,
``broker.replication.confirm_run``), or raises ``ReplicasBehind`` after ``BATON_WAIT_TIMEOUT_MS``
(the run is written; the idempotency key stays claimed, so submitting again with it confirms the
run instead of starting another).

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

from baton.agents.backpressure import check_submit
from baton.agents.runtime.tracing import trace_fields
from baton.agents.settings import Settings
from baton.agents.webhooks import check_url, forget_run, watch_run
from baton.agents.workflow.spec import Workflow
from baton.broker import Keys, Redis, idempotency, submit, threads
from baton.broker.errors import BrokerError, OutOfMemoryError, TryAgainError, is_transient
from baton.broker.replication import ReplicasBehind, ReplicaWait, confirm_run
from baton.broker.tenants import check_quota
from baton.protocol import Budget, Priority, ProtocolError, Task, ThreadPolicy, new_id
from baton.protocol.threads import check_thread, scoped_thread

__all__ = ["new_task", "retrying", "submit_run"]

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


def retrying(attempt: Callable[[int], T], limit_s: float) -> T:
    """Call ``attempt(n)`` (``n`` = 0, 1, ...) until it returns, retrying Redis outages (a failover:
    ``is_transient`` errors other than OOM, which is backpressure) with back-off for ``limit_s`` seconds."""
    give_up = time.monotonic() + limit_s
    backoff = _FIRST_BACKOFF_S
    n = 0
    while True:
        try:
            return attempt(n)
        except Exception as exc:
            if not is_transient(exc) or isinstance(exc, OutOfMemoryError) or time.monotonic() >= give_up:
                raise
        time.sleep(min(backoff * random.uniform(0.5, 1.0), max(0.0, give_up - time.monotonic())))
        backoff, n = min(backoff * 2, _MAX_BACKOFF_S), n + 1


def _confirm(redis: Redis, keys: Keys, run_id: str, wait: ReplicaWait | None) -> int | None:
    """``confirm_run`` of ``run_id``; ``ReplicasBehind`` when it exists on fewer replicas than asked."""
    acked = confirm_run(redis, keys.run(run_id), keys.replica_probe(run_id), run_id, wait)
    if acked is not None and wait is not None and acked < wait.replicas:
        raise ReplicasBehind(run_id, acked, wait)
    return acked


def submit_run(redis: Redis, keys: Keys, settings: Settings, wf: Workflow, text: str, *,
               deadline: float | None = None, metadata: Mapping[str, str] | None = None,
               run_id: str | None = None, budget: Budget | None = None, priority: Priority = "interactive",
               trace: Mapping[str, str] | None = None, idempotency_key: str | None = None,
               webhook: str | None = None, tenant: str = "", thread: str | None = None,
               thread_policy: ThreadPolicy | None = None) -> str:
    """Start a run of ``wf`` on ``text`` (for ``tenant``, empty: none); return its id.

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
    run_id = run_id or new_id()
    hook = check_url(webhook or wf.webhook, settings.webhook_allow) if webhook or wf.webhook else None
    wait = ReplicaWait(settings.wait_replicas, settings.wait_timeout_ms) if settings.wait_replicas else None
    limit_s = settings.submit_retry_s
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= idempotency.MAX_KEY_LEN:
            raise ProtocolError(f"idempotency key must be 1 to {idempotency.MAX_KEY_LEN} characters")
        ttl = keys.retention.marker_s
        claimed = f"{tenant}/{idempotency_key}" if tenant else idempotency_key
        held = retrying(lambda _: idempotency.claim(redis, keys, claimed, run_id, ttl), limit_s)
        if held is not None and held != run_id:  # (our own id: a retried claim that had landed)
            if wait is not None:
                retrying(lambda _: _confirm(redis, keys, held, wait), limit_s)
            return held
    task = new_task(wf, text, settings, deadline=deadline, run_id=run_id, priority=priority, trace=trace,
                    tenant=tenant)

    def attempt(n: int) -> str:
        if n == 0:
            check_submit(redis, keys, settings, wf)
            check_quota(redis, keys, tenant)
        elif _confirm(redis, keys, run_id, wait) is not None:
            return run_id  # an earlier attempt wrote it
        if hook is not None:
            watch_run(redis, keys, run_id, hook)
        if thread is None:
            submit(redis, keys, task, metadata=metadata, budget=wf.run_budget(budget))
        else:
            threads.submit_turn(redis, keys, task, thread, policy, metadata=metadata, budget=wf.run_budget(budget))
        if wait is not None and _confirm(redis, keys, run_id, wait) is None:
            raise TryAgainError(f"TRYAGAIN run {run_id} vanished before its replicas acknowledged it")
        return run_id

    try:
        return retrying(attempt, limit_s)
    except BaseException as exc:
        if idempotency_key is not None and not isinstance(exc, ReplicasBehind):
            with contextlib.suppress(BrokerError):  # Redis may still be down: the claim then expires
                idempotency.release(redis, keys, claimed, run_id)
        if hook is not None and not isinstance(exc, ReplicasBehind):
            with contextlib.suppress(BrokerError):  # (else it fails as "run not found" later)
                forget_run(redis, keys, run_id)
        raise
