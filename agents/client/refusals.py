"""Broker refusals as the public errors: a submit the broker refuses (``baton.broker.backpressure``)
reaches client code as a ``baton.SubmitRefused`` subclass (:mod:`baton.errors`), a submit short of
its replicas (``BATON_WAIT_REPLICAS``) as ``baton.NotReplicated``, a busy thread's refusal as
``baton.ThreadBusy``."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from baton import errors
from baton.broker.backpressure import BacklogFull, RedisFull, SubmitRefused
from baton.broker.replication import ReplicasBehind
from baton.broker.threads import ThreadBusy

__all__ = ["apublic_refusals", "public_error", "public_refusals"]

P = ParamSpec("P")
T = TypeVar("T")


def public_error(exc: SubmitRefused) -> errors.SubmitRefused:
    """The ``baton`` error a broker refusal is shown to client code as."""
    if isinstance(exc, BacklogFull):
        return errors.BacklogFull(exc.reason, exc.retry_after_s, role=exc.role, backlog=exc.backlog, limit=exc.limit)
    if isinstance(exc, RedisFull):
        return errors.RedisFull(exc.reason, exc.retry_after_s)
    return errors.SubmitRefused(exc.reason, exc.retry_after_s)


_REFUSALS = (SubmitRefused, ReplicasBehind, ThreadBusy)


def _public(exc: SubmitRefused | ReplicasBehind | ThreadBusy) -> Exception:
    if isinstance(exc, SubmitRefused):
        return public_error(exc)
    if isinstance(exc, ReplicasBehind):
        return errors.NotReplicated(str(exc), exc.run_id)
    return errors.ThreadBusy(str(exc), exc.thread_id, exc.active)


def public_refusals(submit: Callable[P, T]) -> Callable[P, T]:
    """Wrap a client method: broker refusals are raised as ``baton.SubmitRefused`` subclasses, a
    submit short of its replicas as ``baton.NotReplicated``, a busy thread's as ``baton.ThreadBusy``."""
    @functools.wraps(submit)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return submit(*args, **kwargs)
        except _REFUSALS as exc:
            raise _public(exc) from exc
    return wrapper


def apublic_refusals(submit: Callable[P, Awaitable[T]]) -> Callable[P, Coroutine[Any, Any, T]]:
    """``public_refusals`` for an asyncio client method."""
    @functools.wraps(submit)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return await submit(*args, **kwargs)
        except _REFUSALS as exc:
            raise _public(exc) from exc
    return wrapper
