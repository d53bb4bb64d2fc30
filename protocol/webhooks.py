"""Completion webhooks on the wire: a delivery as stored, its headers, and its signature.

When a run submitted with a webhook ends, baton POSTs a JSON body (the run's terminal event and
its result) to the URL with these headers:

- ``Baton-Delivery``: the delivery's id (the run id; a re-sent delivery keeps it: receivers dedupe on it);
- ``Baton-Attempt``: 1 for the first attempt, then 2, 3...;
- ``Baton-Timestamp``: the attempt's time in Unix seconds;
- ``Baton-Signature``: ``v1=`` and the hex HMAC-SHA256, keyed with ``BATON_WEBHOOK_SECRET``, of
  ``TIMESTAMP + "." + BODY`` (the timestamp header's text, a dot, the raw body bytes).

A receiver recomputes the signature over the raw body, compares it in constant time and refuses
a timestamp older than a few minutes (a replay); :func:`verify` does exactly that.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Annotated, Literal

import msgspec

__all__ = ["ATTEMPT_HEADER", "DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "Delivery",
           "DeliveryStatus", "MAX_URL_LENGTH", "sign", "verify"]

DELIVERY_HEADER = "Baton-Delivery"
ATTEMPT_HEADER = "Baton-Attempt"
TIMESTAMP_HEADER = "Baton-Timestamp"
SIGNATURE_HEADER = "Baton-Signature"
MAX_URL_LENGTH = 2048

DeliveryStatus = Literal["waiting", "pending", "delivered", "failed"]
"""``waiting``: the run has not ended; ``pending``: to be sent (again) at ``next_at``; ``delivered``:
a 2xx answer came back; ``failed``: refused by the allow-list, or no 2xx within the retry window."""


class Delivery(msgspec.Struct, frozen=True, kw_only=True):
    """The completion webhook of one run, as stored."""

    run_id: str
    url: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_URL_LENGTH)]
    status: DeliveryStatus = "waiting"
    created_at: float = 0.0
    retry_from: float = 0.0
    """When the current retry window opened (the run's end, or the last re-send)."""
    next_at: float = 0.0
    attempts: int = 0
    last_code: int = 0
    """The HTTP status of the last attempt (0: none came back)."""
    last_error: str = ""
    delivered_at: float = 0.0


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The ``Baton-Signature`` value of ``body`` sent at ``timestamp`` (``v1=`` + hex HMAC-SHA256)."""
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256)
    return f"v1={mac.hexdigest()}"


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300.0,
           now: float | None = None) -> bool:
    """Whether ``signature`` signs ``body`` at ``timestamp`` and the timestamp is at most
    ``tolerance_s`` seconds away from ``now``."""
    try:
        at = float(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - at) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, timestamp, body), signature)
