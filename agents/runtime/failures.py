"""Every failure a worker meets is an outage, a refusal, or a possible poison message.

- ``"transient"``: something the message does not control is down (the model endpoint, Redis).
  It costs time, never a delivery attempt: keep the batch, back off, retry the failed step.
- ``"permanent"``: the request can never succeed (the model refused it, a prompt that cannot
  fit, a message that does not decode or validate). Dead-letter at once with the real reason.
- ``"poison"``: anything else (a bug, a prompt that crashes the model). Counted against the
  message's delivery attempts, as before; dead-lettered after ``max_deliveries``.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from ...broker import errors as broker_errors
from ...protocol import ProtocolError
from ..backends.errors import ModelError, ModelRejected, ModelUnavailable

__all__ = ["Failure", "classify", "describe", "retry_after"]

Failure = Literal["transient", "permanent", "poison"]
"""What a failure costs: time (transient), the message at once (permanent), a delivery attempt (poison)."""


def classify(exc: BaseException) -> Failure:
    """The class of ``exc``: model and Redis outages are transient; refusals, decode and validation errors permanent."""
    if isinstance(exc, ModelUnavailable):
        return "transient"
    if isinstance(exc, (ModelRejected, ProtocolError, msgspec.DecodeError, msgspec.ValidationError)):
        return "permanent"
    if broker_errors.is_redis_error(exc):
        return "transient" if broker_errors.is_transient(exc) else "poison"
    return "poison"


def describe(exc: BaseException) -> str:
    """A short cause for logs and outage reasons: ``"connection refused"``, ``"HTTP 503: busy"``..."""
    if isinstance(exc, ModelError):
        return exc.reason
    if broker_errors.is_redis_error(exc):
        return broker_errors.describe(exc)
    return f"{type(exc).__name__}: {exc}"


def retry_after(exc: BaseException) -> float | None:
    """The delay the failing server asked for (``Retry-After``), if any."""
    return exc.retry_after if isinstance(exc, ModelUnavailable) else None
