"""Fan-in: gather the parts of a fan-out group atomically (``broker/lua/join.lua``).

Each part is stored in the run's join hash and its entry acked in one Lua step, so a part is
never lost nor counted twice; the delivery that completes the group gets every part back and
stays pending until its handoff commits.
"""

from __future__ import annotations

from typing import Any

import redis

from ..protocol import Task, encode
from .keys import Keys
from .scripts import LuaScript
from .streams import Entry

__all__ = ["join_part"]

_join = LuaScript("join.lua")


def join_part(client: redis.Redis, keys: Keys, group: str, consumer: str, entry: Entry,
              task: Task) -> dict[int, bytes] | None:
    """Record ``task``, part ``task.part`` of ``task.parts`` in its fan-out group ``task.group``.

    Returns every part (encoded) by index once all have arrived (the entry stays pending), ``None``
    when the part was parked (its entry acked), arrived after its group was gathered (a duplicate:
    acked), or the entry is no longer this consumer's. The join hash lives as long as a handoff's
    idempotency marker after its last part (``keys.retention.marker_s``).
    """
    reply: list[Any] = _join(client, [entry.stream, keys.join(task.run_id, task.group)],
                             [group, consumer, entry.id, task.part, encode(task), task.parts, keys.retention.marker_s])
    if int(reply[0]) != 1:
        return None
    flat = reply[1:]
    return {int(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}
