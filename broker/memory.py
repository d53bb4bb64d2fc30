"""Shared memory of a run and long-term memory of an agent, as Redis hashes.

A run's shared memory (``Keys.memory``) is one hash every agent of the run reads and writes:
field -> text. Writes are plain HSETs of a value derived from the message, so a redelivered
message rewrites the same field: idempotent. An agent's long-term memory (``Keys.agent_pad``)
is a hash keyed by message id (idempotent too), each value JSON with the time it was written.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import redis

from .keys import Keys
from .pads import MemoryEntry, decode_memory, encode_memory
from .text import as_text

__all__ = ["agent_memory", "read_shared", "remember", "write_shared"]


def read_shared(client: redis.Redis, keys: Keys, run_id: str) -> dict[str, str]:
    """The run's shared memory, field -> value, fields sorted."""
    raw: dict[Any, Any] = client.hgetall(keys.memory(run_id))
    return {as_text(k): as_text(v) for k, v in sorted(raw.items())}


def write_shared(
    client: redis.Redis, keys: Keys, run_id: str, values: Mapping[str, str]
) -> None:
    """Set fields of the run's shared memory (kept as long as the run record: ``keys.retention``)."""
    if not values:
        return
    pipe = client.pipeline(transaction=True)
    mapping: dict[Any, Any] = dict(values)
    pipe.hset(keys.memory(run_id), mapping=mapping)
    if ttl_s := keys.retention.record_ttl_s:
        pipe.expire(keys.memory(run_id), ttl_s)
    pipe.execute()


def remember(client: redis.Redis, keys: Keys, agent: str, msg_id: str, task: str, response: str) -> None:
    """Add one entry to ``agent``'s long-term memory (keyed by ``msg_id``: redelivery-safe)."""
    value = encode_memory(MemoryEntry(task=task, response=response, at=time.time()))
    client.hsetnx(keys.agent_pad(agent), msg_id, value)


def agent_memory(client: redis.Redis, keys: Keys, agent: str, window: int) -> list[MemoryEntry]:
    """The last ``window`` entries of ``agent``'s long-term memory, oldest first."""
    raw: dict[Any, Any] = client.hgetall(keys.agent_pad(agent))
    entries = sorted((decode_memory(v) for v in raw.values()), key=lambda e: e.at)
    return entries[-window:] if window > 0 else []
