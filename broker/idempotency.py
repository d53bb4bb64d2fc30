"""Idempotent submits: a caller's idempotency key claims the run id it starts, once.

The claim is one ``SET key run_id NX GET EX ttl``: of any number of submits racing with one key,
exactly one sets it (and goes on to write its run); every other one reads the winner's run id back
in the same command. A submit that fails after claiming (refused by backpressure, a bad task)
releases its claim so that a retry may start the run; the release deletes the key only while it
still holds that submit's run id.
"""

from __future__ import annotations

from typing import Any

import redis

from baton.broker.keys import Keys

__all__ = ["MAX_KEY_LEN", "claim", "claimed", "release"]

MAX_KEY_LEN = 255
"""Longest idempotency key accepted (checked by the submit path)."""


def claim(client: redis.Redis, keys: Keys, key: str, run_id: str, ttl_s: int) -> str | None:
    """Claim ``key`` for ``run_id`` for ``ttl_s`` seconds; ``None`` when claimed, else the run id of
    the submit that holds it."""
    prev: Any = client.set(keys.idempotency(key), run_id, nx=True, get=True, ex=max(1, ttl_s))
    if prev is None:
        return None
    return prev.decode() if isinstance(prev, bytes) else str(prev)


def claimed(client: redis.Redis, keys: Keys, key: str) -> str | None:
    """The run id ``key`` holds, if any."""
    value: Any = client.get(keys.idempotency(key))
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def release(client: redis.Redis, keys: Keys, key: str, run_id: str) -> None:
    """Drop the claim of ``key`` if it still holds ``run_id`` (a failed submit's)."""
    name = keys.idempotency(key)

    def drop(pipe: Any) -> None:
        held = pipe.get(name)
        if held is not None and (held.decode() if isinstance(held, bytes) else held) == run_id:
            pipe.multi()
            pipe.delete(name)

    client.transaction(drop, name)
