"""A cap on the event streams one client holds open at once.

Every open ``GET /v1/runs/{id}/events`` keeps a blocking Redis read (and a connection of the
asyncio client's pool) for as long as it lasts; ``/api/events`` keeps a task. ``StreamSlots``
counts them per client, the bearer token the request was admitted with, or its address when the
server runs without tokens, and refuses the ``MAX_STREAMS_PER_CLIENT + 1``-th with 429 until one
closes. The count is per server process.
"""

from __future__ import annotations

import threading
from collections import Counter

from fastapi import HTTPException, Request

from .auth import ACCESS_TOKEN_PARAM, bearer_token

__all__ = ["MAX_STREAMS_PER_CLIENT", "Slot", "StreamSlots"]

MAX_STREAMS_PER_CLIENT = 16
"""Event streams one client (token, or address without tokens) may hold open at once."""


class Slot:
    """One open stream's place; ``release`` is idempotent (the stream's end and the response's both call it)."""

    def __init__(self, owner: StreamSlots, client: str) -> None:
        self._owner = owner
        self._client = client
        self._released = False

    def release(self) -> None:
        """Give the place back (once)."""
        with self._owner.lock:
            if self._released:
                return
            self._released = True
            self._owner.open[self._client] -= 1
            if self._owner.open[self._client] <= 0:
                del self._owner.open[self._client]


class StreamSlots:
    """Open event streams per client, at most ``limit`` each."""

    def __init__(self, limit: int = MAX_STREAMS_PER_CLIENT) -> None:
        self.limit = limit
        self.lock = threading.Lock()
        self.open: Counter[str] = Counter()

    def acquire(self, request: Request) -> Slot:
        """A place for one more stream of ``request``'s client, or 429 when it holds ``limit`` already."""
        client = _client_of(request)
        with self.lock:
            if self.open[client] >= self.limit:
                raise HTTPException(429, f"too many open event streams from this client (at most {self.limit}); "
                                         "close one first", headers={"Retry-After": "5"})
            self.open[client] += 1
        return Slot(self, client)


def _client_of(request: Request) -> str:
    token = bearer_token(request.headers.get("authorization", "")) or request.query_params.get(ACCESS_TOKEN_PARAM)
    if token:
        return "token:" + token
    return "addr:" + (request.client.host if request.client else "")
