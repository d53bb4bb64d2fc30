"""Dynamic batching for a model server: concurrent requests share one batched generate call.

A :class:`Batcher` owns a backend and one generating thread. Each request (one prompt or a
prompt list) is queued; the thread takes the oldest, then keeps collecting requests for up to
``wait_ms`` milliseconds or until ``max_batch`` prompts are gathered, and generates for all of
them in one ``backend.generate`` call. Requests asking for a different ``max_new_tokens`` than
the oldest one wait for a later batch (one call has one length). A prompt list longer than
``max_batch`` is split into requests of at most ``max_batch`` prompts, its future resolving once
all of them have.

Decoding is greedy and the Hugging Face backend pads on the left, so each prompt's text is the
same whether it was generated alone or in a batch with others. Streaming requests get their
prompts' chunks through their own ``on_tokens(index, text)`` (``index`` within the request).

Chat requests (:meth:`Batcher.submit_chat`) are batched the same way, among themselves: one
``backend.chat`` call answers every chat request of a batch (a text backend then generates them
together, one generate call per distinct ``max_new_tokens``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from ...protocol.chat import ChatRequest, ChatResult
from ..backends.base import Generation, ModelBackend

__all__ = ["DEFAULT_BATCH_WAIT_MS", "DEFAULT_MAX_BATCH", "Batcher", "Request"]

log = logging.getLogger(__name__)

DEFAULT_BATCH_WAIT_MS = 5.0
"""How long the first request of a batch waits for others to join (milliseconds)."""

DEFAULT_MAX_BATCH = 64
"""Prompts per generate call at most."""

OnTokens = Callable[[int, str], None]


@dataclass(eq=False)
class Request:
    """Prompts waiting for a batch, and the future their generations are delivered to."""

    prompts: list[str]
    max_new_tokens: int
    on_tokens: OnTokens | None = None
    future: Future[Any] = field(default_factory=Future)
    chat: ChatRequest | None = None
    """A chat request (then ``prompts`` is one placeholder and the future's result a ``ChatResult``)."""


class _Fanout:
    """``on_tokens`` for a batch: routes each prompt's chunks to the request it came from."""

    def __init__(self, requests: Sequence[Request]) -> None:
        self.routes: list[tuple[OnTokens, int] | None] = []
        for req in requests:
            for local in range(len(req.prompts)):
                self.routes.append((req.on_tokens, local) if req.on_tokens is not None else None)

    def __call__(self, index: int, text: str) -> None:
        route = self.routes[index] if 0 <= index < len(self.routes) else None
        if route is not None:
            route[0](route[1], text)


def _shifted(on_tokens: OnTokens | None, offset: int) -> OnTokens | None:
    """``on_tokens`` of one part of a split request: its indexes moved to the whole request's."""
    if on_tokens is None or offset == 0:
        return on_tokens
    return lambda index, text: on_tokens(index + offset, text)


class Batcher:
    """Run a backend's generate calls from one thread, batching the requests that arrive together.

    Args:
        backend: the model backend (its ``generate`` takes a prompt list).
        max_batch: prompts per generate call at most (>= 1).
        wait_ms: how long to wait for more requests after the first one of a batch (>= 0).
    """

    def __init__(self, backend: ModelBackend, *, max_batch: int = DEFAULT_MAX_BATCH,
                 wait_ms: float = DEFAULT_BATCH_WAIT_MS) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        if wait_ms < 0:
            raise ValueError(f"wait_ms must be >= 0, got {wait_ms}")
        self.backend = backend
        self.max_batch = max_batch
        self.wait_s = wait_ms / 1000
        self.batches = 0
        """Generate calls made so far."""
        self.largest = 0
        """The most prompts one generate call had."""
        self._queue: deque[Request] = deque()
        self._cond = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="model-batcher", daemon=True)
        self._thread.start()

    def submit(self, prompts: Sequence[str], max_new_tokens: int,
               on_tokens: OnTokens | None = None) -> Future[list[Generation]]:
        """Queue ``prompts``; the future resolves to their generations, in order (or the backend's error)."""
        prompts = list(prompts)
        if len(prompts) > self.max_batch:
            return self._submit_split(prompts, max_new_tokens, on_tokens)
        req = Request(prompts, max_new_tokens, on_tokens)
        if not req.prompts:
            req.future.set_result([])
            return req.future
        return self._enqueue(req)

    def _submit_split(self, prompts: list[str], max_new_tokens: int,
                      on_tokens: OnTokens | None) -> Future[list[Generation]]:
        """``submit`` in parts of at most ``max_batch`` prompts, gathered into one future."""
        step = self.max_batch
        parts = [self.submit(prompts[i:i + step], max_new_tokens, _shifted(on_tokens, i))
                 for i in range(0, len(prompts), step)]
        whole: Future[list[Generation]] = Future()
        lock = threading.Lock()

        def gather(_: Future[list[Generation]]) -> None:
            with lock:
                if whole.done() or not all(p.done() for p in parts):
                    return
                error = next((p.exception() for p in parts if p.exception() is not None), None)
                if error is not None:
                    whole.set_exception(error)
                else:
                    whole.set_result([g for p in parts for g in p.result()])

        for part in parts:
            part.add_done_callback(gather)
        return whole

    def submit_chat(self, request: ChatRequest, on_tokens: OnTokens | None = None) -> Future[ChatResult]:
        """Queue a chat request; the future resolves to its ``ChatResult`` (or the backend's error).
        ``on_tokens(0, text)`` receives the answer's text as it is generated."""
        return self._enqueue(Request([""], request.max_new_tokens or 0, on_tokens, chat=request))

    def _enqueue(self, req: Request) -> Future[Any]:
        """Queue ``req`` for the batching thread; its future."""
        with self._cond:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            self._queue.append(req)
            self._cond.notify()
        return req.future

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> list[Generation]:
        """Submit and wait (for callers on their own thread)."""
        return self.submit(prompts, max_new_tokens).result()

    def close(self) -> None:
        """Stop after the batch in progress; queued requests fail with ``RuntimeError``."""
        with self._cond:
            self._closed = True
            left, self._queue = list(self._queue), deque()
            self._cond.notify_all()
        for req in left:
            req.future.set_exception(RuntimeError("the model server is shutting down"))
        self._thread.join(timeout=30)

    def _run(self) -> None:
        while True:
            batch = self._collect()
            if batch is None:
                return
            self._generate(batch)

    def _collect(self) -> list[Request] | None:
        """The next batch: the oldest request plus those joining within the wait, same length, up to max_batch."""
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                return None
            first = self._queue.popleft()
            batch, size = [first], len(first.prompts)
            deadline = time.monotonic() + self.wait_s
            while size < self.max_batch:
                size += self._take_matching(batch, first, self.max_batch - size)
                remaining = deadline - time.monotonic()
                if size >= self.max_batch or remaining <= 0 or self._closed:
                    break
                self._cond.wait(remaining)
            return batch

    def _take_matching(self, batch: list[Request], first: Request, room: int) -> int:
        """Move queued requests like ``first`` (chat, or generate of the same length) that fit in
        ``room`` prompts into ``batch``."""
        taken = 0
        chat = first.chat is not None
        for req in list(self._queue):
            if (req.chat is not None) != chat or (not chat and req.max_new_tokens != first.max_new_tokens):
                continue
            if len(req.prompts) <= room - taken:
                self._queue.remove(req)
                batch.append(req)
                taken += len(req.prompts)
        return taken

    def _generate(self, batch: list[Request]) -> None:
        batch = [req for req in batch if req.future.set_running_or_notify_cancel()]  # drop cancelled ones
        if not batch:
            return
        prompts = [p for req in batch for p in req.prompts]
        streaming = any(req.on_tokens is not None for req in batch)
        chats = [req.chat for req in batch if req.chat is not None]
        try:
            if chats:
                answers = self.backend.chat(chats, on_tokens=_Fanout(batch) if streaming else None)
            else:
                gens = self.backend.generate(prompts, max_new_tokens=batch[0].max_new_tokens,
                                             on_tokens=_Fanout(batch) if streaming else None)
        except Exception as exc:  # noqa: BLE001 - every request of the batch gets the error
            for req in batch:
                req.future.set_exception(exc)
            return
        self.batches += 1
        self.largest = max(self.largest, len(prompts))
        if chats:
            for req, answer in zip(batch, answers, strict=True):
                req.future.set_result(answer)
            return
        start = 0
        for req in batch:
            req.future.set_result(gens[start:start + len(req.prompts)])
            start += len(req.prompts)
