"""Limits that apply to wire messages, checked before decoding."""

__all__ = ["DEAD_LETTER_MAX_BYTES", "MAX_HOPS", "MAX_MESSAGE_BYTES"]

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest encoded message accepted (1 MiB); larger entries are dead-lettered undecoded."""

DEAD_LETTER_MAX_BYTES = 64 * MAX_MESSAGE_BYTES
"""Largest dead letter read back: a dead letter keeps its original whole, so one whose original
was over ``MAX_MESSAGE_BYTES`` is itself over it. Larger ones are shown as unreadable."""

MAX_HOPS = 32
"""Default limit on how many handoffs one run may take (a loop guard)."""
