"""Limits that apply to wire messages and workflows; each has its one definition here."""

__all__ = [
    "DEAD_LETTER_MAX_BYTES",
    "MAX_HOPS",
    "MAX_ID_LENGTH",
    "MAX_MESSAGE_BYTES",
    "MAX_NAME_LENGTH",
    "MAX_PARTS",
    "MAX_TOOL_TIMEOUT_S",
]

MAX_MESSAGE_BYTES = 1024 * 1024
"""Largest encoded message accepted (1 MiB); larger entries are dead-lettered undecoded."""

DEAD_LETTER_MAX_BYTES = 64 * MAX_MESSAGE_BYTES
"""Largest dead letter read back: a dead letter keeps its original whole, so one whose original
was over ``MAX_MESSAGE_BYTES`` is itself over it. Larger ones are shown as unreadable."""

MAX_HOPS = 32
"""Default limit on how many handoffs one run may take (a loop guard)."""

MAX_PARTS = 64
"""Most parts one fan-out may split a role's output into."""

MAX_TOOL_TIMEOUT_S = 3600.0
"""Longest timeout a tool call may be given, in seconds."""

MAX_NAME_LENGTH = 64
"""Longest workflow, role, agent or tool name (names become parts of Redis keys)."""

MAX_ID_LENGTH = 128
"""Longest message or run id (ids become parts of Redis keys)."""
