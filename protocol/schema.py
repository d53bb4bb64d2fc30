"""The JSON Schema of the protocol: the message union, the run-event union and a run budget."""

from __future__ import annotations

import msgspec

from .budget import Budget
from .events import Event
from .messages import Message

__all__ = ["schema"]


def schema() -> dict[str, object]:
    """Return the JSON Schema of the message union; ``"events"`` holds the run-event union's,
    ``"budget"`` a run budget's."""
    (messages, events, budget), defs = msgspec.json.schema_components([Message, Event, Budget])
    return {**messages, "events": events, "budget": budget, "$defs": defs}
