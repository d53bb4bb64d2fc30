"""How a model backend says why a call failed: the endpoint is down, or it refused the request.

:class:`ModelUnavailable` is an outage (connection refused or reset, a timeout, HTTP 408, 425,
429, 500, 502, 503, 504): the same call can succeed later, after ``retry_after`` seconds when the
server said so. :class:`ModelRejected` is final (HTTP 400, 401, 403, 404, 405, 413, 422, a prompt
that cannot fit the context): retrying the same request cannot help. Any other exception out of
a backend is neither and is treated as a possible poison message.
"""

from __future__ import annotations

import email.utils
import math
import time

__all__ = [
    "PERMANENT_STATUS",
    "TRANSIENT_STATUS",
    "ModelError",
    "ModelRejected",
    "ModelUnavailable",
    "parse_retry_after",
]

TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
"""HTTP statuses that mean "try again later"."""

PERMANENT_STATUS = frozenset({400, 401, 403, 404, 405, 413, 422})
"""HTTP statuses that mean "this request will never succeed"."""


class ModelError(RuntimeError):
    """A model call failed; ``endpoint`` names the model or server, ``reason`` says why."""

    def __init__(self, endpoint: str, reason: str, *, status: int | None = None) -> None:
        super().__init__(f"{endpoint}: {reason}")
        self.endpoint = endpoint
        self.reason = reason
        self.status = status


class ModelUnavailable(ModelError):
    """The model endpoint is down or overloaded; retry later (after ``retry_after`` seconds if known)."""

    def __init__(self, endpoint: str, reason: str, *, status: int | None = None,
                 retry_after: float | None = None) -> None:
        super().__init__(endpoint, reason, status=status)
        self.retry_after = retry_after


class ModelRejected(ModelError, ValueError):
    """The model refused this request for good (bad request, auth, a prompt that cannot fit)."""


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header: delta seconds or an HTTP date; None if absent or unreadable."""
    if value is None or not (value := value.strip()):
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return max(0.0, seconds) if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
