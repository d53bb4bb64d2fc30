"""The errors the client raises.

::

    BatonError
    ├── RunNotFound        no such run (never submitted, or its record expired)
    ├── RunFailed          the run ended failed: ``reason`` and ``role`` say why and where
    └── RunCancelled       the run was cancelled

``Run.wait`` raises the builtin ``TimeoutError`` when the run is still going at its timeout.
"""

from __future__ import annotations

__all__ = ["BatonError", "RunCancelled", "RunFailed", "RunNotFound"]


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
