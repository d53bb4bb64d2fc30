"""Time limits of baton's HTTP servers (``baton dashboard``, ``baton serve-model``) on slow clients.

uvicorn closes idle keep-alive connections (``timeout_keep_alive``, 5 s) but waits forever for the
rest of a request's headers, so a client that sends half a request line holds a connection (and
its file descriptor) open. ``TimedH11Protocol`` answers 408 and closes the connection when a
request's headers are not complete ``HEADER_TIMEOUT_S`` after its first byte (or after the
connection opened). A body is read by the route (``agents/ops/bodies.py``,
``agents/serving/limits.py``) within ``BODY_TIMEOUT_S``, else 408. A reverse proxy in front
should add its own limits (see docs/RELIABILITY.md, Security).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

from fastapi import HTTPException
from uvicorn.protocols.http.h11_impl import H11Protocol

from ..settings import Settings, SettingsError

__all__ = ["BODY_TIMEOUT_S", "HEADER_TIMEOUT_S", "TimedH11Protocol", "read_within"]

try:
    _settings = Settings.from_env()
except SettingsError:  # (importing must not fail: whoever reads the settings next reports it in one line)
    _settings = Settings()
HEADER_TIMEOUT_S = _settings.http_header_timeout_s
"""How long a request's headers may take to arrive (``BATON_HTTP_HEADER_TIMEOUT_S``, default 10 s)."""

BODY_TIMEOUT_S = _settings.http_body_timeout_s
"""How long a request's body may take to arrive (``BATON_HTTP_BODY_TIMEOUT_S``, default 30 s)."""

_TIMEOUT_408 = b"HTTP/1.1 408 Request Timeout\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"


class TimedH11Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline on each request's headers."""

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._header_timer is None and (self.cycle is None or self.cycle.response_complete):
            self._arm()  # the first bytes of the next request on a kept-alive connection
        super().data_received(data)

    def handle_events(self) -> None:
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:  # a request's headers arrived whole
            self._disarm()

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(HEADER_TIMEOUT_S, self._too_slow)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _too_slow(self) -> None:
        self._header_timer = None
        if not self.transport.is_closing():
            self.transport.write(_TIMEOUT_408)
            self.transport.close()


async def read_within(chunks: AsyncIterator[bytes], timeout_s: float = BODY_TIMEOUT_S) -> AsyncIterator[bytes]:
    """``chunks`` (a request's body stream), raising ``TimeoutError`` once it has taken ``timeout_s``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    it: Any = chunks.__aiter__()
    while True:
        try:
            chunk = await asyncio.wait_for(it.__anext__(), max(0.0, deadline - loop.time()))
        except StopAsyncIteration:
            return
        yield chunk


async def read_capped(request: Any, max_bytes: int, too_large: Callable[[int], Exception]) -> bytes:
    """A request's whole body, refusing it with ``too_large(max_bytes)`` once it (or its declared
    ``Content-Length``) passes ``max_bytes``, and with a 408 once it has taken ``BODY_TIMEOUT_S``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > max_bytes:
        raise too_large(max_bytes)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in read_within(request.stream()):
            size += len(chunk)
            if size > max_bytes:
                raise too_large(max_bytes)
            chunks.append(chunk)
    except TimeoutError:
        raise HTTPException(408, f"the request body took over {BODY_TIMEOUT_S:g} s to arrive") from None
    return b"".join(chunks)
