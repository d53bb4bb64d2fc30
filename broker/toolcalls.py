"""Tool calls over Redis: a call stream per tool, a reply list per call.

The caller XADDs a ``tool_call`` to ``Keys.tool_stream(tool)`` and BLPOPs the reply list
``Keys.tool_replies(run_id, call_id)`` with the call's timeout; a tool worker (consumer group
``tools``) runs the call, LPUSHes the ``tool_result`` with a TTL, then XACKs the call.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis

from .cluster import is_cluster
from .keys import Keys
from .streams import GroupStreams, ensure_group

__all__ = [
    "REPLY_TTL_S",
    "TOOL_GROUP",
    "blocking_client",
    "dead_letter_call",
    "ensure_tool_group",
    "reply",
    "send_call",
    "tool_streams",
    "wait_reply",
]

TOOL_GROUP = "tools"
REPLY_TTL_S = 300


def ensure_tool_group(client: redis.Redis, keys: Keys, tool: str) -> str:
    """Create the tool's call stream and group (idempotent); return the stream key."""
    stream = keys.tool_stream(tool)
    ensure_group(client, stream, TOOL_GROUP)
    return stream


def tool_streams(client: redis.Redis, keys: Keys, tools: Sequence[str], consumer: str) -> GroupStreams:
    """The call streams of ``tools`` in the group ``tools``, seen by the tool worker ``consumer``."""
    return GroupStreams(client, keys, [keys.tool_stream(t) for t in tools], TOOL_GROUP, consumer)


def send_call(client: redis.Redis, keys: Keys, tool: str, payload: bytes) -> str:
    """Publish an encoded ``tool_call``; return its entry id."""
    entry_id: Any = client.xadd(keys.tool_stream(tool), {"msg": payload})
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


def wait_reply(client: redis.Redis, reply_key: str, timeout_s: float) -> bytes | None:
    """Block up to ``timeout_s`` for the encoded ``tool_result``; ``None`` on timeout."""
    got: Any = client.blpop([reply_key], timeout=max(0.01, timeout_s))
    if not got:
        return None
    client.delete(reply_key)
    return bytes(got[1])


def reply(client: redis.Redis, stream: str, entry_id: str, reply_key: str | None, payload: bytes | None) -> None:
    """Push the result (when there is a reply key) with a TTL, then ack the call entry."""
    pipe = client.pipeline(transaction=False)
    if reply_key and payload is not None:
        pipe.lpush(reply_key, payload)
        pipe.expire(reply_key, REPLY_TTL_S)
    pipe.xack(stream, TOOL_GROUP, entry_id)
    pipe.execute()


def dead_letter_call(client: redis.Redis, keys: Keys, stream: str, entry_id: str, payload: bytes) -> None:
    """Add the encoded ``dead_letter`` of a call entry to the dead-letter stream and ack the entry, atomically."""
    pipe = client.pipeline(transaction=True)
    pipe.xadd(keys.dead(0), {"msg": payload})
    pipe.xack(stream, TOOL_GROUP, entry_id)
    pipe.execute()


def blocking_client(client: redis.Redis) -> redis.Redis:
    """A client on the same server without a socket timeout, for BLPOPs as long as a tool's timeout.

    On a cluster, the client itself (a tool's timeout must then stay under its socket timeout)."""
    if is_cluster(client):
        return client
    pool = client.connection_pool
    kwargs = {**pool.connection_kwargs, "socket_timeout": None}
    return redis.Redis(connection_pool=type(pool)(connection_class=pool.connection_class, **kwargs))
