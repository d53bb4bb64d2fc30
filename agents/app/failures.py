"""User code failing: which handler exceptions are retried, and the dead-letter reason of the others.

Transient (the entry stays pending and is delivered again, counting one delivery): ``baton.Retry``,
model and Redis outages (``agents/runtime/failures.py``), and the exception types an app marks
``retryable``. Anything else dead-letters the entry at once and fails the run, with the exception's
type, message and innermost frame in the reason.
"""

from __future__ import annotations

import os
import traceback

from ..runtime import failures as runtime_failures
from .outcome import BadReturn
from .waits import WaitTimeout

__all__ = ["Retry", "failure_reason", "is_transient"]

_APP_DIR = os.path.dirname(os.path.abspath(__file__))


class Retry(Exception):
    """Raise from a handler to have its task delivered again later (counts one delivery).

    ``delay`` asks for at least that many seconds before the next attempt.
    """

    def __init__(self, reason: str = "", *, delay: float | None = None) -> None:
        super().__init__(reason or "retry requested")
        self.reason = reason or "retry requested"
        self.delay = delay


def is_transient(exc: BaseException, retryable: tuple[type[BaseException], ...] = ()) -> bool:
    """Whether a handler that raised ``exc`` should run again later rather than dead-letter now."""
    if isinstance(exc, Retry) or (retryable and isinstance(exc, retryable)):
        return True
    if isinstance(exc, BadReturn):
        return False
    return runtime_failures.classify(exc) == "transient"


def failure_reason(exc: BaseException, role: str = "") -> str:
    """The dead-letter reason of a handler's exception: type, message and innermost frame."""
    frames = traceback.extract_tb(exc.__traceback__) if exc.__traceback__ else []
    if isinstance(exc, WaitTimeout):  # raised inside baton's wait_for: name the handler's line
        frames = [f for f in frames if os.path.dirname(f.filename) != _APP_DIR] or frames
    where = ""
    if frames:
        f = frames[-1]
        where = f" at {os.path.basename(f.filename)}:{f.lineno} in {f.name}"
    who = f"handler of role {role!r} raised " if role else ""
    message = str(exc)
    return f"{who}{type(exc).__name__}{': ' + message if message else ''}{where}"
