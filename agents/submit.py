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
"""

from __future__ import annotations

import time
from collections.abc import Mapping

from baton.agents.backpressure import check_submit
from baton.agents.runtime.tracing import trace_fields
from baton.agents.settings import Settings
from baton.agents.workflow.spec import Workflow
from baton.broker import Keys, Redis, idempotency, submit
from baton.broker.keys import marker_ttl
from baton.protocol import Budget, Priority, ProtocolError, Task, new_id

__all__ = ["new_task", "submit_run"]


def new_task(wf: Workflow, text: str, settings: Settings, *, deadline: float | None = None,
             run_id: str | None = None, priority: Priority = "interactive",
             trace: Mapping[str, str] | None = None) -> Task:
    """The first task of a new run of ``wf`` on ``text``.

    ``deadline`` is in seconds from now; ``trace`` holds the W3C ``traceparent``/``tracestate`` the
    run's hops continue (default: the caller's current OpenTelemetry span, if any).
    """
    fields = trace_fields() if trace is None else trace
    return Task(run_id=run_id or new_id(), role=wf.entry, task=text, workflow=wf.name,
                deadline=None if deadline is None else time.time() + deadline, max_hops=settings.max_hops,
                priority=priority, traceparent=fields.get("traceparent", ""), tracestate=fields.get("tracestate", ""))


def submit_run(redis: Redis, keys: Keys, settings: Settings, wf: Workflow, text: str, *,
               deadline: float | None = None, metadata: Mapping[str, str] | None = None,
               run_id: str | None = None, budget: Budget | None = None, priority: Priority = "interactive",
               trace: Mapping[str, str] | None = None, idempotency_key: str | None = None) -> str:
    """Start a run of ``wf`` on ``text``; return its id.

    Refused with ``broker.backpressure.SubmitRefused`` while the entry role is at its backlog limit
    or Redis is full, with ``ProtocolError`` when the task breaks the protocol's limits (nothing is
    written either way). ``budget``'s unset limits come from the workflow's ``[budget]``;
    ``metadata`` is kept on the run record. ``idempotency_key``: the run this key started, if any,
    instead of a new one (see the module). See :func:`new_task` for the rest.
    """
    run_id = run_id or new_id()
    if idempotency_key is not None:
        if not 0 < len(idempotency_key) <= idempotency.MAX_KEY_LEN:
            raise ProtocolError(f"idempotency key must be 1 to {idempotency.MAX_KEY_LEN} characters")
        ttl = marker_ttl(settings.record_ttl_s, settings.marker_ttl_s)
        if (held := idempotency.claim(redis, keys, idempotency_key, run_id, ttl)) is not None:
            return held
    try:
        check_submit(redis, keys, settings, wf)
        task = new_task(wf, text, settings, deadline=deadline, run_id=run_id, priority=priority, trace=trace)
        return submit(redis, keys, task, record_ttl_s=settings.record_ttl_s, metadata=metadata,
                      budget=wf.run_budget(budget), events_maxlen=settings.events_maxlen,
                      events_ttl_s=settings.events_ttl_s)
    except BaseException:
        if idempotency_key is not None:
            idempotency.release(redis, keys, idempotency_key, run_id)
        raise
