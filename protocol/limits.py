"""Limits that apply to wire messages, checked before decoding."""

__all__ = ["MAX_HOPS", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest encoded message accepted (1 MiB); larger entries are dead-lettered undecoded."""

MAX_HOPS = 32
"""Default limit on how many handoffs one run may take (a loop guard)."""
