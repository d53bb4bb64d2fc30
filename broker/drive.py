"""One broker step for both kinds of client: written once, without I/O, run by either.

A step that needs more than one round trip (a read, then a decision, then a write; a ``WATCH``ed
transaction; a Lua call that checks its library first) is written as an *op*: a generator that
yields *calls* (``call(client)`` returns the reply, or with a ``redis.asyncio`` client an awaitable
of it) and is sent each reply back (or has its error thrown in). :func:`run` drives an op on a
``redis.Redis``, :func:`arun` on a ``redis.asyncio.Redis``; the op holds all the logic, so the sync
and the async function of a step share it instead of being two copies (as httpx's ``BaseClient``
serves ``Client`` and ``AsyncClient``). Redis-py's two clients have the same method names, so a
call is usually a lambda on the client (``lambda c: c.hgetall(key)``); a pipeline is made by a call
and its commands queued without I/O, then ``yield lambda _: pipe.execute()``.

::

    def _status(keys: Keys, run_id: str) -> Op[str | None]:
        raw = yield lambda c: c.hget(keys.run(run_id), "status")
        return None if raw is None else as_text(raw)

    status = blocking(_status)     # status(client, keys, run_id)
    astatus = awaiting(_status)    # await astatus(aclient, keys, run_id)
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any, Concatenate, ParamSpec, TypeAlias, TypeVar

import redis
import redis.asyncio

__all__ = ["Call", "Op", "arun", "awaiting", "blocking", "execute", "is_async", "pause", "run", "scan"]

T = TypeVar("T")
P = ParamSpec("P")

Call: TypeAlias = Callable[[Any], Any]
"""One round trip: given the client, its reply (or, for an asyncio client, an awaitable of it)."""

Op: TypeAlias = Generator[Call, Any, T]
"""A broker step without I/O: yields calls, is sent their replies, returns its result."""


_ASYNC: dict[type, bool] = {}


def is_async(client: object) -> bool:
    """Whether ``client`` is a ``redis.asyncio`` client (or pipeline). Answered once per class: the
    check goes through ``typing``'s protocol machinery (redis-py's classes), a cost on every submit."""
    kind = type(client)
    known = _ASYNC.get(kind)
    if known is None:
        known = _ASYNC[kind] = issubclass(kind, redis.asyncio.Redis | redis.asyncio.RedisCluster
                                          | redis.asyncio.client.Pipeline)
    return known


def run(op: Op[T], client: redis.Redis | Any) -> T:
    """Drive ``op`` on a synchronous client; its result."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            call = op.send(reply) if error is None else op.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            reply, error = call(client), None
        except Exception as exc:
            reply, error = None, exc


async def arun(op: Op[T], aclient: redis.asyncio.Redis | Any) -> T:
    """Drive ``op`` on a ``redis.asyncio`` client (no thread); its result."""
    reply: Any = None
    error: Exception | None = None
    while True:
        try:
            call = op.send(reply) if error is None else op.throw(error)
        except StopIteration as stop:
            result: T = stop.value
            return result
        try:
            reply = call(aclient)
            if inspect.isawaitable(reply):
                reply = await reply
            error = None
        except Exception as exc:
            reply, error = None, exc


def blocking(make: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], T]:
    """The synchronous function of the op ``make``: ``f(client, *args)``."""
    def sync(client: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return run(make(*args, **kwargs), client)

    sync.__doc__ = make.__doc__
    return sync


def awaiting(make: Callable[P, Op[T]]) -> Callable[Concatenate[Any, P], Coroutine[Any, Any, T]]:
    """The asyncio function of the op ``make``: ``await f(aclient, *args)``."""
    async def aio(aclient: Any, /, *args: P.args, **kwargs: P.kwargs) -> T:
        return await arun(make(*args, **kwargs), aclient)

    aio.__doc__ = make.__doc__
    return aio


def execute(pipe: Any, **options: Any) -> Call:
    """A call that executes ``pipe`` (its commands queued without I/O)."""
    return lambda _: pipe.execute(**options)


def pause(seconds: float) -> Call:
    """A call that sleeps ``seconds`` (``asyncio.sleep`` on an asyncio client: the loop runs on)."""
    def wait(client: Any) -> Any:
        return asyncio.sleep(seconds) if is_async(client) else time.sleep(seconds)

    return wait


def scan(**options: Any) -> Call:
    """A call whose reply is every key ``scan_iter(**options)`` finds (all SCAN pages; every node's
    on a cluster), as a list."""
    def keys(client: Any) -> Any:
        if is_async(client):
            async def collect() -> list[Any]:
                return [k async for k in client.scan_iter(**options)]

            return collect()
        return list(client.scan_iter(**options))

    return keys
