"""Fan-in: gather the parts of a fan-out group atomically (``broker/lua/join.lua``).

Each part is stored in the run's join hash and its entry acked in one Lua step, so a part is
never lost nor counted twice; the delivery that completes the group gets every part back and
stays pending until its handoff commits.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from baton.broker.cache import PerClient
from baton.broker.keys import MARKER_TTL_S, Keys
from baton.broker.streams import Entry

__all__ = ["join_part"]

_LUA = resources.files("baton.broker").joinpath("lua/join.lua").read_text()
_SHA = hashlib.sha1(_LUA.encode()).hexdigest()
_loaded: PerClient[str, bool] = PerClient(maxsize=1)


def join_part(
    client: redis.Redis, keys: Keys, group: str, consumer: str, entry: Entry, run_id: str, join_group: str,
    part: int, parts: int, payload: bytes, *, ttl_s: int = MARKER_TTL_S,
) -> dict[int, bytes] | None:
    """Record ``part`` of ``parts`` in ``join_group``.

    Returns every part by index once all have arrived (the entry stays pending), ``None`` when
    the part was parked (its entry acked), arrived after its group was gathered (a duplicate:
    acked), or the entry is no longer this consumer's. The join hash lives ``ttl_s`` after its
    last part (``keys.marker_ttl``).
    """
    reply = _evalsha(client, [entry.stream, keys.join(run_id, join_group)],
                     [group, consumer, entry.id, part, payload, parts, ttl_s])
    if int(reply[0]) != 1:
        return None
    flat = reply[1:]
    return {int(flat[i]): bytes(flat[i + 1]) for i in range(0, len(flat), 2)}


def _evalsha(client: redis.Redis, script_keys: list[str], args: list[str | bytes | int]) -> list[Any]:
    """Run the join script, loading it once per client and again after a ``NOSCRIPT`` reply."""
    _loaded.get(client, _SHA, lambda: bool(client.script_load(_LUA)))
    try:
        reply: list[Any] = client.evalsha(_SHA, len(script_keys), *script_keys, *args)
    except NoScriptError:  # the server restarted or flushed its scripts
        client.script_load(_LUA)
        reply = client.evalsha(_SHA, len(script_keys), *script_keys, *args)
    return reply
