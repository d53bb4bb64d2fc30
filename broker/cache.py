"""Per-client memos: what broker functions already did through one Redis client.

Every such cache in the broker is a ``PerClient``: keyed weakly by the client (a memo goes away
with its client) and, per client, a least-recently-used map of at most ``maxsize`` entries, so
none grows without bound however many clients, streams or scripts a process goes through.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, Generic, TypeVar

import redis

__all__ = ["PerClient"]

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class PerClient(Generic[K, V]):
    """Values remembered per Redis client: weak on the client, at most ``maxsize`` per client (LRU).

    Values must not refer to their client (that would keep it alive).
    """

    def __init__(self, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._memos: weakref.WeakKeyDictionary[Any, OrderedDict[K, V]] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, client: redis.Redis, key: K, make: Callable[[], V]) -> V:
        """The value remembered for ``key`` through ``client``; ``make()`` it (and remember it) if none is."""
        found = self.find(client, key)
        if found is not None:
            return found
        return self.put(client, key, make())  # made outside the lock: it may talk to Redis

    def find(self, client: object, key: K) -> V | None:
        """The value remembered for ``key`` through ``client`` (any client, asyncio too), or None."""
        with self._lock:
            memo = self._memos.get(client)
            if memo is not None and key in memo:
                memo.move_to_end(key)
                return memo[key]
        return None

    def put(self, client: object, key: K, value: V) -> V:
        """Remember ``value`` for ``key`` through ``client``; return it."""
        with self._lock:
            memo = self._memos.setdefault(client, OrderedDict())
            memo[key] = value
            memo.move_to_end(key)
            while len(memo) > self.maxsize:
                memo.popitem(last=False)
        return value

    def forget(self, client: object, key: K) -> None:
        """Drop what is remembered for ``key`` through ``client`` (e.g. the server lost it)."""
        with self._lock:
            memo = self._memos.get(client)
            if memo is not None:
                memo.pop(key, None)

    def size(self, client: redis.Redis) -> int:
        """How many values are remembered for ``client``."""
        with self._lock:
            return len(self._memos.get(client) or ())

    def clients(self) -> int:
        """How many clients have a memo."""
        with self._lock:
            return len(self._memos)
