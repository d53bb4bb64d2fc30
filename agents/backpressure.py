"""Backpressure at the submit paths (client, HTTP API, CLI): which backlog limit applies, and the
public errors a refusal becomes.

The limit of a workflow is its entry role's ``max_backlog`` when the workflow file sets one, else
``BATON_MAX_BACKLOG`` (0: no limit). The check itself, its cache and its Retry-After live in
``baton.broker.backpressure``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from baton import errors
from baton.agents.settings import Settings
from baton.agents.workflow.spec import Workflow
from baton.broker import Keys, Redis
from baton.broker.backpressure import BacklogFull, RedisFull, SubmitRefused, check_backlog

__all__ = ["backlog_limit", "check_submit", "public_error", "public_refusals"]

P = ParamSpec("P")
T = TypeVar("T")


def backlog_limit(wf: Workflow, settings: Settings) -> int:
    """The backlog limit of ``wf``'s entry role (0: none)."""
    own = wf.role(wf.entry).max_backlog
    return settings.max_backlog if own is None else own


def check_submit(client: Redis, keys: Keys, settings: Settings, wf: Workflow) -> None:
    """Refuse (``broker.backpressure.BacklogFull``) a new run of ``wf`` while its entry role is at its limit."""
    check_backlog(client, keys, wf.name, wf.entry, backlog_limit(wf, settings))


def public_error(exc: SubmitRefused) -> errors.SubmitRefused:
    """The ``baton`` error a broker refusal is shown to client code as."""
    if isinstance(exc, BacklogFull):
        return errors.BacklogFull(exc.reason, exc.retry_after_s, role=exc.role, backlog=exc.backlog, limit=exc.limit)
    if isinstance(exc, RedisFull):
        return errors.RedisFull(exc.reason, exc.retry_after_s)
    return errors.SubmitRefused(exc.reason, exc.retry_after_s)


def public_refusals(submit: Callable[P, T]) -> Callable[P, T]:
    """Wrap a client method: broker refusals are raised as ``baton.SubmitRefused`` subclasses."""
    @functools.wraps(submit)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return submit(*args, **kwargs)
        except SubmitRefused as exc:
            raise public_error(exc) from exc
    return wrapper
