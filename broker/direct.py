"""The hot path's round trips on a connection each thread holds, past redis-py's per-command layers.

A worker's hop is three round trips (the blocking read, the guard's read, the commit). redis-py 8
wraps every command it sends in layers a held connection does not need: taking a connection from
the pool and giving it back (two locks, a health check), its retry closure, the deprecation
wrappers of the typed commands and the observability recorder's counters. On a lone hop those
cost about as much CPU as the rest of the worker's work (bench/NOTES.md, "The hot path,
profiled a fourth time"). :func:`execute` and :func:`pipeline` send the same commands on a
connection the calling thread keeps from the client's own pool, and parse the replies with the
client's own response callbacks: the bytes on the wire and the results are redis-py's.

When the held connection breaks (a lost server, a failover, a timeout) it is closed and given
back, and the command goes through the client's ordinary path, with its reconnect and retry, as
it did before. A Redis Cluster client (which routes each command by its key) always takes the
ordinary path.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .cluster import is_cluster

__all__ = ["execute", "pipeline"]

_BROKEN = (RedisConnectionError, RedisTimeoutError, OSError)


class _Held(threading.local):
    conn: Any = None


_held: weakref.WeakKeyDictionary[redis.Redis, _Held | None] = weakref.WeakKeyDictionary()
_lock = threading.Lock()


def _slot(client: redis.Redis) -> _Held | None:
    """The per-thread holder of ``client``'s connection (None: the client takes its ordinary path)."""
    try:
        return _held[client]
    except KeyError:
        pass
    held = None if is_cluster(client) or not isinstance(client.connection_pool, redis.ConnectionPool) else _Held()
    with _lock:
        return _held.setdefault(client, held)


def _conn(client: redis.Redis, held: _Held) -> Any:
    conn = held.conn
    if conn is None:
        conn = held.conn = client.connection_pool.get_connection()
    return conn


def _drop(client: redis.Redis, held: _Held) -> None:
    conn, held.conn = held.conn, None
    if conn is not None:
        conn.disconnect()
        client.connection_pool.release(conn)


def _parse(client: redis.Redis, args: Sequence[Any], reply: Any, options: dict[str, Any]) -> Any:
    callback = client.response_callbacks.get(args[0]) if isinstance(args[0], str) else None  # type: ignore[no-untyped-call]
    return callback(reply, **options) if callback is not None else reply


def execute(client: redis.Redis, *args: Any, **options: Any) -> Any:
    """``client.execute_command(*args, **options)`` on this thread's held connection (the command
    name in ``args[0]`` upper case, as redis-py's callbacks are keyed)."""
    held = _slot(client)
    if held is None:
        return client.execute_command(*args, **options)  # type: ignore[no-untyped-call]
    conn = _conn(client, held)
    try:
        conn.send_packed_command(conn.pack_command(*args))
        reply = conn.read_response()
    except _BROKEN:
        _drop(client, held)
        return client.execute_command(*args, **options)  # type: ignore[no-untyped-call]
    return _parse(client, args, reply, options)


def pipeline(client: redis.Redis, commands: Sequence[Sequence[Any]]) -> list[Any]:
    """The replies of ``commands`` sent in one round trip (no MULTI), each error as its exception
    (``pipe.execute(raise_on_error=False)``)."""
    held = _slot(client)
    if held is None or not commands:
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return list(pipe.execute(raise_on_error=False))
    conn = _conn(client, held)
    replies: list[Any] = []
    try:
        conn.send_packed_command(conn.pack_commands(commands))
        for command in commands:
            try:
                replies.append(_parse(client, command, conn.read_response(), {}))
            except ResponseError as exc:
                replies.append(exc)
    except _BROKEN:
        _drop(client, held)
        pipe = client.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)  # type: ignore[no-untyped-call]
        return list(pipe.execute(raise_on_error=False))
    return replies
