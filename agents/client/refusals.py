"""Broker refusals as the public errors: a submit the broker refuses (``baton.broker.backpressure``)
reaches client code as a ``baton.SubmitRefused`` subclass (:mod:`baton.errors`), a submit short of
its replicas (``BATON_WAIT_REPLICAS``) as ``baton.NotReplicated``, a busy thread's refusal as
``baton.ThreadBusy``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from baton import errors
from baton.broker.backpressure import BacklogFull, RedisFull, SubmitRefused
from baton.broker.replication import ReplicasBehind
from baton.broker.threads import ThreadBusy

__all__ = ["public_error", "public_refusals"]

P = ParamSpec("P")
T = TypeVar("T")


def public_error(exc: SubmitRefused) -> errors.SubmitRefused:
    """The ``baton`` error a broker refusal is shown to client code as."""
    if isinstance(exc, BacklogFull):
        return errors.BacklogFull(exc.reason, exc.retry_after_s, role=exc.role, backlog=exc.backlog, limit=exc.limit)
    if isinstance(exc, RedisFull):
        return errors.RedisFull(exc.reason, exc.retry_after_s)
    return errors.SubmitRefused(exc.reason, exc.retry_after_s)


def public_refusals(submit: Callable[P, T]) -> Callable[P, T]:
    """Wrap a client method: broker refusals are raised as ``baton.SubmitRefused`` subclasses, a
    submit short of its replicas as ``baton.NotReplicated``."""
    @functools.wraps(submit)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        try:
            return submit(*args, **kwargs)
        except SubmitRefused as exc:
            raise public_error(exc) from exc
        except ReplicasBehind as exc:
            raise errors.NotReplicated(str(exc), exc.run_id) from exc
        except ThreadBusy as exc:
            raise errors.ThreadBusy(str(exc), exc.thread_id, exc.active) from exc
    return wrapper
