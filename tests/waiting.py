"""The one way tests wait: poll a condition until it holds, never sleep a fixed time to synchronise."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 120, what: str = "condition",
             logs: Callable[[], str] | None = None, interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy and return that.

    On timeout, fail naming ``what`` (and with ``logs()``, e.g. worker logs, when given).
    """
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs() if logs else ''}")
        time.sleep(interval)
    return value
