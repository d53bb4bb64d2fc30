"""The worker's ``Gateway`` for code roles: handlers' model and tool calls through baton's services.

Each ``generate``/``chat`` call of a handler (through ``baton.Context``) waits in a queue on the
worker's event loop. The queue is sent as ONE backend call (per kind, ``max_new_tokens`` and stop
sequences) once ``batch_size`` calls wait, once every running handler of the batch is waiting on
a model call (nobody else could join), or ``linger_ms`` after the first call arrived: concurrent
handlers' calls are coalesced like a template role's prompts. A sent call goes through the same
services as a template role's: the run's budget (one model call and ``max_new_tokens`` reserved
per call, settled with the real count), the model's shared rate limit, the circuit breaker and
outage riding (``ModelCalls``), the hop's model-call span and ``tokens`` events. It runs in a
worker thread, so the loop (and the other handlers) go on meanwhile.

A call the budget refuses, or an outage outlasts, raises :class:`CallRefused` (the hop
dead-letters with the reason); a call that failed for no known reason raises ``ModelUnavailable``
(the entry is left pending and retried, counting one delivery).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ...broker.budget import ModelCall, reserve_model_calls, settle_model_calls
from ...protocol.chat import ChatRequest, ChatResult
from ..backends import Generation
from ..backends.errors import ModelUnavailable
from ..tools.runner import ToolOutcome
from .modelcall import call_model
from .ratelimits import Reservation
from .role import RoleRuntime
from .tokens import TokenStream
from .tracing import traced_model_call
from .work import WorkItem

__all__ = ["CallRefused", "RoleGateway"]

log = logging.getLogger("baton.worker")


class CallRefused(Exception):
    """A handler's model call that will not be made: the run's budget refused it, or a model outage
    outlasted the run's deadline or the outage budget. The hop fails with ``reason``."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(slots=True)
class _Call:
    item: WorkItem
    seq: int
    max_new: int
    prompt: str = ""
    request: ChatRequest | None = None
    stop: tuple[str, ...] = ()
    future: asyncio.Future[Any] = field(default_factory=lambda: asyncio.get_running_loop().create_future())

    @property
    def key(self) -> tuple[str, int, tuple[str, ...]]:
        return ("chat" if self.request is not None else "generate", self.max_new, self.stop)


@dataclass(frozen=True, slots=True)
class _Chatted:
    """A chat result with its generated token count (what spans and the rate limit count)."""

    result: ChatResult

    @property
    def new_tokens(self) -> int:
        return self.result.completion_tokens


class RoleGateway:
    """One role's gateway on one event loop (``Handle`` makes one per role and worker)."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt
        self.active = 0
        """Handlers running now (a batch's handlers run concurrently)."""
        self.model_calls = 0
        """Model calls handlers asked for (journal replays never get here)."""
        self.backend_calls = 0
        """Backend calls made for them (a coalesced call counts once)."""
        self._queue: list[_Call] = []
        self._sent = 0  # calls sent to the backend and not yet answered
        self._timer: asyncio.TimerHandle | None = None

    # the Gateway protocol -------------------------------------------------------------
    async def generate(self, item: WorkItem, prompt: str, *, max_new_tokens: int,
                       stop: Sequence[str] | None = None) -> Generation:
        """The role's model's continuation of ``prompt`` (``Generation.text``: prompt + continuation)."""
        call = _Call(item, self._seq(item), max_new_tokens or self.rt.max_new_tokens, prompt=prompt,
                     stop=tuple(stop or ()))
        result: Generation = await self._ask(call)
        return result

    async def chat(self, item: WorkItem, request: ChatRequest) -> ChatResult:
        """One chat call of the role's model (the context runs the tool loop)."""
        call = _Call(item, self._seq(item), request.max_new_tokens or self.rt.max_new_tokens, request=request)
        result: ChatResult = await self._ask(call)
        return result

    async def tool(self, item: WorkItem, name: str, args: Mapping[str, Any]) -> ToolOutcome:
        """Tool ``name`` for ``item``'s run (the role's allow-list and the run's tool budget hold;
        ``tool_call``/``tool_result`` events); errors are in the outcome."""
        return await asyncio.to_thread(self.rt.steps.call_tool, name, dict(args), item.task)

    # handlers --------------------------------------------------------------------------
    def begin(self, handlers: int = 1) -> None:
        """``handlers`` start (a batch's handlers begin together: none of their calls goes out alone
        while the others are still on their way to their first call)."""
        self.active += handlers

    def end(self) -> None:
        """A handler ended: the calls waiting may be all there will be."""
        self.active -= 1
        self._maybe_send()

    # coalescing ------------------------------------------------------------------------
    def _seq(self, item: WorkItem) -> int:
        item.calls += 1
        self.model_calls += 1
        return item.calls

    async def _ask(self, call: _Call) -> Any:
        self._queue.append(call)
        self._maybe_send()
        return await call.future

    def _maybe_send(self) -> None:
        if not self._queue:
            return
        s = self.rt.settings
        if len(self._queue) >= s.batch_size or len(self._queue) + self._sent >= self.active or s.linger_ms <= 0:
            self._send_queue()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(s.linger_ms / 1000, self._send_queue)

    def _send_queue(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        size = max(1, self.rt.settings.batch_size)
        while self._queue:
            taken, self._queue = self._queue[:size], self._queue[size:]
            groups: dict[tuple[str, int, tuple[str, ...]], list[_Call]] = {}
            for c in taken:
                groups.setdefault(c.key, []).append(c)
            for group in groups.values():
                self._sent += len(group)
                asyncio.get_running_loop().create_task(self._send(group))
            if len(self._queue) < size:
                break
        if self._queue:
            self._maybe_send()

    async def _send(self, group: list[_Call]) -> None:
        try:
            answers = await asyncio.to_thread(self._call, group)
        except BaseException as exc:  # noqa: BLE001 - every waiting handler gets the error
            answers = [exc] * len(group)
        finally:
            self._sent -= len(group)
        for c, answer in zip(group, answers, strict=True):
            if c.future.done():
                continue
            if isinstance(answer, BaseException):
                c.future.set_exception(answer)
            else:
                c.future.set_result(answer)
        self._maybe_send()

    # one backend call (a worker thread) ---------------------------------------------------
    def _call(self, group: list[_Call]) -> list[Any]:
        """Budget, then one backend call through outages, then settle; an answer or an exception per call."""
        rt = self.rt
        reasons = rt.ride_out_redis(lambda: reserve_model_calls(rt.client, rt.keys, [self._budget(c) for c in group]),
                                    "a budget reservation")
        answers: list[Any] = [CallRefused(reason) if reason else None for reason in reasons]
        asking = [i for i, reason in enumerate(reasons) if not reason]
        if not asking:
            return answers
        calls = [group[i] for i in asking]
        self.backend_calls += 1
        held = rt.held([c.item.entry for c in calls], [c.item.task.run_id for c in calls])
        out = rt.model_calls.run(lambda todo: self._backend([calls[i] for i in todo]),
                                 [c.item.task.deadline for c in calls], held)
        for i, g in out.generated.items():
            answers[asking[i]] = g.result if isinstance(g, _Chatted) else g
        for i, reason in out.rejected.items():
            answers[asking[i]] = CallRefused(reason)
        for i in out.poisoned + out.held:
            answers[asking[i]] = ModelUnavailable(rt.model, "the model call failed; the task is retried")
        used = {i: g.new_tokens for i, g in out.generated.items()}
        for i, c in enumerate(calls):
            c.item.tokens += used.get(i, 0)
        backend = rt.backend.name if rt.backend else rt.model
        rt.ride_out_redis(lambda: settle_model_calls(rt.client, rt.keys, [
            self._budget(c, used.get(i, 0), model=backend, called=i in used) for i, c in enumerate(calls)]),
            "a budget settlement")
        return answers

    def _budget(self, c: _Call, tokens: int | None = None, *, model: str = "", called: bool = True) -> ModelCall:
        t = c.item.task
        return ModelCall(run_id=t.run_id, msg_id=f"{t.id}.{c.seq}", role=self.rt.spec.role, model=model,
                         tokens=c.max_new if tokens is None else tokens, called=called)

    def _backend(self, calls: list[_Call]) -> list[Any]:
        rt = self.rt
        backend = rt.backend
        assert backend is not None, "the role's backend is loaded before its first batch"
        first = calls[0]
        if first.request is None:
            return list(call_model(backend, [(rt, c.item) for c in calls], first.max_new,
                                   stream_tokens=rt.settings.stream_tokens, prompts=[c.prompt for c in calls],
                                   stop=list(first.stop) or None))
        requests = [c.request for c in calls if c.request is not None]
        reservation: Reservation = rt.limiter.acquire(len(requests), first.max_new)
        used = 0
        try:
            chatted = traced_model_call([c.item.span for c in calls], lambda: self._chat(requests, calls),
                                        model=backend.name, role=rt.spec.role)
            used = sum(c.new_tokens for c in chatted)
            return chatted
        finally:
            rt.limiter.settle(reservation, used)

    def _chat(self, requests: list[ChatRequest], calls: list[_Call]) -> list[_Chatted]:
        rt = self.rt
        backend = rt.backend
        assert backend is not None
        on_tokens: Callable[[int, str], None] | None = None
        stream = None
        if rt.settings.stream_tokens:
            stream = TokenStream(rt.events, [c.item.task for c in calls], rt.spec.role, rt.spec.agent)
            on_tokens = stream
        try:
            return [_Chatted(r) for r in backend.chat(requests, on_tokens=on_tokens)]
        finally:
            if stream is not None:
                stream.close()
