"""The errors the client raises.

::

    BatonError
    ├── RunNotFound        no such run (never submitted, or its record expired)
    ├── RunFailed          the run ended failed: ``reason`` and ``role`` say why and where
    ├── RunCancelled       the run was cancelled
    ├── RunEnded           the run has ended: it takes no more signals
    ├── NotReplicated      a run is written but not yet on ``BATON_WAIT_REPLICAS`` replicas
    ├── ThreadBusy         a thread runs a turn and the submit's policy is ``reject``
    └── SubmitRefused      a submit was refused for now: retry after ``retry_after_s`` seconds
        ├── BacklogFull    the entry role is ``backlog`` tasks behind, at or over ``limit``
        └── RedisFull      Redis is at ``maxmemory`` and refuses writes

``Run.wait`` raises the builtin ``TimeoutError`` when the run is still going at its timeout.
"""

from __future__ import annotations

__all__ = ["BacklogFull", "BatonError", "NotReplicated", "RedisFull", "RunCancelled", "RunEnded", "RunFailed",
           "RunNotFound", "SubmitRefused", "ThreadBusy"]


class BatonError(Exception):
    """Base class of the client's errors."""


class RunNotFound(BatonError, LookupError):
    """There is no run with this id (never submitted, or its record expired)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"no run {run_id!r} (it never existed or its record expired)")
        self.run_id = run_id


class RunFailed(BatonError):
    """The run ended ``failed``."""

    def __init__(self, run_id: str, reason: str, role: str = "") -> None:
        where = f" at role {role!r}" if role else ""
        super().__init__(f"run {run_id} failed{where}: {reason}")
        self.run_id = run_id
        self.reason = reason
        self.role = role


class RunCancelled(BatonError):
    """The run was cancelled."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"run {run_id} was cancelled")
        self.run_id = run_id


class RunEnded(BatonError):
    """The run has ended (``status``): a signal for it is refused."""

    def __init__(self, run_id: str, reason: str) -> None:
        super().__init__(reason)
        self.run_id = run_id
        self.reason = reason


class NotReplicated(BatonError):
    """A submit wrote run ``run_id`` but fewer than ``BATON_WAIT_REPLICAS`` replicas acknowledged
    it within ``BATON_WAIT_TIMEOUT_MS``; submit again with ``run_id=run_id`` to confirm it (the run
    is never written twice)."""

    def __init__(self, message: str, run_id: str) -> None:
        super().__init__(message)
        self.run_id = run_id


class ThreadBusy(BatonError):
    """Thread ``thread_id`` runs run ``active`` and the submit's thread policy is ``reject``: nothing
    was written."""

    def __init__(self, message: str, thread_id: str, active: str) -> None:
        super().__init__(message)
        self.thread_id = thread_id
        self.active = active


class SubmitRefused(BatonError):
    """A submit was refused and nothing was written; the same submit may succeed after
    ``retry_after_s`` seconds. ``reason`` says why."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(f"{reason}; retry in {retry_after_s} s")
        self.reason = reason
        self.retry_after_s = retry_after_s


class BacklogFull(SubmitRefused):
    """The workflow's entry role is ``backlog`` tasks behind, at or over its ``limit``
    (``BATON_MAX_BACKLOG`` or the role's ``max_backlog``)."""

    def __init__(self, reason: str, retry_after_s: int, *, role: str, backlog: int, limit: int) -> None:
        super().__init__(reason, retry_after_s)
        self.role = role
        self.backlog = backlog
        self.limit = limit


class RedisFull(SubmitRefused):
    """Redis is at ``maxmemory`` (``noeviction``) and refuses writes; runs already accepted are kept."""
