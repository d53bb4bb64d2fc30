"""``Context``: what a code role's handler gets besides its task, and where every call goes through baton.

``await ctx.generate(...)``, ``await ctx.chat(...)``, ``await ctx.tool(...)`` and
``await ctx.step(name, fn)`` go through the worker's ``Gateway`` (rate limits, budget, breaker,
outages, token events, spans, batching) and the call journal: each result is recorded before the
handler goes on, and on redelivery a recorded call returns its result without running again.
In a plain (non-async) handler, which runs in a thread, the same methods return their results
directly.
"""

from __future__ import annotations

import asyncio
import inspect
import typing
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import msgspec

from ...broker import Entry, Keys, Memory, Redis
from ...broker.journal import CallKind, hop_key
from ...broker.memory import read_shared, write_shared
from ...broker.threads import run_history
from ...protocol import Custom, Task, Turn
from ...protocol.chat import ChatMessage, ChatRequest, ChatResult, NamedToolChoice
from ..backends import Generation
from ..runtime.events import EventWriter
from ..runtime.gateway import Gateway
from ..runtime.prompt import render_prompt
from ..tools.loop import LoopResult, run_tool_loop
from ..tools.runner import ToolOutcome
from ..workflow.spec import RoleSpec
from . import waits
from .journal import CallJournal, HopCalls, fingerprint
from .outcome import Fail, FanOut, Finish, Handoff, Outcome
from .tooldefs import tool_defs, tool_name

__all__ = ["AppServices", "Context", "ToolFailed"]

T = TypeVar("T")
_encode = msgspec.json.Encoder().encode


class ToolFailed(RuntimeError):
    """``ctx.tool`` got an error back from the tool (the message is the tool's error)."""

    def __init__(self, tool: str, error: str) -> None:
        super().__init__(f"tool {tool!r} failed: {error}")
        self.tool = tool
        self.error = error


class _Item(Protocol):
    """What the context reads of the worker's work item (``agents/runtime/work.WorkItem``)."""

    entry: Entry
    task: Task
    memory: list[Memory] | None


class _ToolRecord(msgspec.Struct, frozen=True):
    output: str = ""
    error: str = ""
    where: str = "inline"
    call_id: str = ""
    ms: float = 0.0


@dataclass(slots=True)
class AppServices:
    """What every context of one worker shares: Redis, key names, the journal and the event writer."""

    client: Redis | None
    keys: Keys
    journal: CallJournal
    events: EventWriter | None = None

    @classmethod
    def for_worker(cls, client: Redis | None, keys: Keys, *, journal: bool = True,
                   events: EventWriter | None = None) -> AppServices:
        """The services of a worker (its records' lifetimes in ``keys.retention``)."""
        return cls(client, keys, CallJournal(client, keys, enabled=journal), events)


class SharedMemory(MutableMapping[str, str]):
    """The run's shared memory: read once when first used, writes go to Redis at once (idempotent HSETs)."""

    def __init__(self, services: AppServices, run_id: str) -> None:
        self._services, self._run_id = services, run_id
        self._values: dict[str, str] | None = None

    def _read(self) -> dict[str, str]:
        if self._values is None:
            s = self._services
            self._values = read_shared(s.client, s.keys, self._run_id) if s.client is not None else {}
        return self._values

    def __getitem__(self, key: str) -> str:
        return self._read()[key]

    def __setitem__(self, key: str, value: str) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        raise TypeError("shared memory fields cannot be deleted (other agents of the run may read them)")

    def __iter__(self) -> Iterator[str]:
        return iter(self._read())

    def __len__(self) -> int:
        return len(self._read())

    def update(self, values: Any = (), /, **more: str) -> None:  # type: ignore[override]
        """Write several fields in one round trip."""
        new = {str(k): str(v) for k, v in {**dict(values), **more}.items()}
        s = self._services
        if s.client is not None:
            write_shared(s.client, s.keys, self._run_id, new)
        self._read().update(new)


class Context:
    """A handler's view of its task, its run and baton (one per delivery of a task)."""

    def __init__(self, gateway: Gateway, item: _Item, spec: RoleSpec, services: AppServices) -> None:
        self._gateway = gateway
        self._item = item
        self._services = services
        self.spec = spec
        self.outcome: Outcome | None = None
        self.scratchpad: dict[str, Any] = {}
        """Notes the handler keeps in this hop's scratchpad entry (``meta.scratchpad``)."""
        self._history: list[Turn] | None = None
        t = item.task
        self._calls = HopCalls(t.run_id, t.id, hop_key(spec.role, t.hop, t.part), services.journal)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._shared: SharedMemory | None = None

    # what the handler may read -------------------------------------------------
    @property
    def run_id(self) -> str:
        """The run this task belongs to."""
        return self._item.task.run_id

    @property
    def hop(self) -> int:
        """The task's hop number in its run (0: the run's first role)."""
        return self._item.task.hop

    @property
    def task(self) -> Task:
        """The task message itself (part, parts, priority, deadline...)."""
        return self._item.task

    @property
    def role(self) -> str:
        """The role this handler serves."""
        return self.spec.role

    @property
    def idempotency_key(self) -> str:
        """A key for the handler's own side effects: the same on every delivery of this task."""
        t = self._item.task
        return f"{t.run_id}.{t.id}"

    @property
    def deliveries(self) -> int:
        """How many times this task has been delivered (1: the first time)."""
        return self._item.entry.deliveries

    @property
    def history(self) -> list[Turn]:
        """The earlier turns of the run's thread, oldest first (``baton.protocol.Turn``: ``task``,
        ``result``, ``status``); empty for a run of no thread. Read once, when first used."""
        if self._history is None:
            s = self._services
            self._history = run_history(s.client, s.keys, self.run_id) if s.client is not None else []
        return self._history

    @property
    def memory(self) -> list[Memory]:
        """The agent's memory as the role's memory mode gives it (entries with ``task`` and ``response``,
        oldest first)."""
        return list(self._item.memory or [])

    @property
    def shared(self) -> SharedMemory:
        """The run's shared memory (read and write, like a dict of str)."""
        if self._shared is None:
            self._shared = SharedMemory(self._services, self.run_id)
        return self._shared

    @property
    def calls(self) -> HopCalls:
        """This hop's journaled calls (how many were made and how many replayed from the journal)."""
        return self._calls

    def prompt(self, task: str | None = None) -> str:
        """The role's prompt template rendered for ``task`` (default: this task) and the agent's memory,
        exactly as a template role renders it (the seed notebook's prompt by default)."""
        return render_prompt(self.spec, self._item.task.task if task is None else task, self.memory)

    # outcomes ------------------------------------------------------------------------
    def handoff(self, role: str, task: str) -> Handoff:
        """Send ``task`` to ``role`` next (instead of the role's ``next``)."""
        return self._choose(Handoff(role, task))

    def fan_out(self, role: str, tasks: Sequence[str]) -> FanOut:
        """Send each of ``tasks`` to ``role`` as one part; its ``join`` role gathers them."""
        return self._choose(FanOut(role, list(tasks)))

    def finish(self, result: str) -> Finish:
        """End the run with ``result``."""
        return self._choose(Finish(result))

    def fail(self, reason: str) -> Fail:
        """Fail the run with ``reason`` (no retry)."""
        return self._choose(Fail(reason))

    def _choose(self, outcome: T) -> T:
        self.outcome = outcome  # type: ignore[assignment]
        return outcome

    # events -------------------------------------------------------------------------
    def emit(self, data: Any) -> None:
        """Write ``data`` (any JSON value) as a ``custom`` event of the run (best effort)."""
        events = self._services.events
        t = self._item.task
        if events is not None:
            events.emit([Custom(run_id=t.run_id, role=self.spec.role, agent=self.spec.agent, hop=t.hop,
                                msg_id=t.id, data=msgspec.to_builtins(data))])

    # calls through baton -------------------------------------------------------------
    def generate(self, prompt: str, *, max_new_tokens: int | None = None,
                 stop: Sequence[str] | None = None) -> Any:
        """The role's model's text for ``prompt`` (the prompt followed by the continuation, as the seed
        notebook reads it). ``max_new_tokens``: the role's, else ``BATON_MAX_NEW_TOKENS``."""
        return self._sync_or_async(self._generate(prompt, max_new_tokens, stop))

    async def _generate(self, prompt: str, max_new_tokens: int | None, stop: Sequence[str] | None) -> str:
        n = max_new_tokens or self.spec.max_new_tokens or 0
        stops = list(stop) if stop else None

        async def call() -> Generation:
            return await self._gateway.generate(self._item, prompt, max_new_tokens=n,  # type: ignore[arg-type]
                                                stop=stops)

        g = await self.journaled("generate", (prompt, n, stops), call, Generation)
        return g.text

    def chat(self, messages: str | Sequence[Any], *, tools: Sequence[Any] | None = None, tool_choice: Any = None,
             response_format: Mapping[str, Any] | None = None, max_new_tokens: int | None = None,
             stop: Sequence[str] | None = None, max_tool_rounds: int | None = None) -> Any:
        """Chat with the role's model: ``messages`` (a str is one user message; dicts or ``ChatMessage`` s)
        with ``tools`` (names, or ``@app.tool`` functions). When the model asks for tool calls, baton runs
        them, appends the results and calls again, up to ``max_tool_rounds`` (the role's); returns the
        ``LoopResult`` (``.text`` is the answer; ``.result``, ``.messages``, ``.calls``)."""
        return self._sync_or_async(self._chat(messages, tools, tool_choice, response_format, max_new_tokens, stop,
                                              max_tool_rounds))

    async def _chat(self, messages: str | Sequence[Any], tools: Sequence[Any] | None, tool_choice: Any,
                    response_format: Mapping[str, Any] | None, max_new_tokens: int | None,
                    stop: Sequence[str] | None, max_tool_rounds: int | None) -> LoopResult:
        rounds = self.spec.max_tool_rounds if max_tool_rounds is None else max_tool_rounds
        defs = tool_defs(tools) if tools else []
        if isinstance(tool_choice, Mapping):
            tool_choice = msgspec.convert(tool_choice, NamedToolChoice)
        request = ChatRequest(messages=as_messages(messages), tools=defs or None,
                              tool_choice=tool_choice if defs else None,
                              response_format=dict(response_format) if response_format else None,
                              max_new_tokens=max_new_tokens or self.spec.max_new_tokens or None,
                              stop=list(stop) if stop else None)
        return await run_tool_loop(request, chat=self.chat_once, run_tool=self.tool_outcome,
                                   allowed=[tool_name(t) for t in tools or ()], max_tool_rounds=rounds,
                                   role=self.spec.role)

    async def chat_once(self, request: ChatRequest) -> ChatResult:
        """One journaled chat model call (no tool loop)."""

        async def call() -> ChatResult:
            return await self._gateway.chat(self._item, request)  # type: ignore[arg-type]

        return await self.journaled("chat", (request,), call, ChatResult)

    def tool(self, name: str, /, **args: Any) -> Any:
        """Call tool ``name`` with ``args``; its output text (``ToolFailed`` when the tool reports an error)."""
        return self._sync_or_async(self._tool(name, args))

    async def _tool(self, name: str, args: Mapping[str, Any]) -> str:
        out = await self.tool_outcome(name, args)
        if out.error:
            raise ToolFailed(name, out.error)
        return out.output

    async def tool_outcome(self, name: str, args: Mapping[str, Any]) -> ToolOutcome:
        """One journaled tool call; its output or error (never raises for the tool's own failure)."""

        async def call() -> _ToolRecord:
            o: ToolOutcome = await self._gateway.tool(self._item, name, dict(args))  # type: ignore[arg-type]
            return _ToolRecord(o.output, o.error, o.where, o.call_id, o.ms)

        r = await self.journaled("tool", (name, dict(args)), call, _ToolRecord)
        return ToolOutcome(name, {k: str(v) for k, v in args.items()}, output=r.output, error=r.error,
                           call_id=r.call_id, where=r.where, ms=r.ms)

    def step(self, name: str, fn: Callable[[], T] | Callable[[], Awaitable[T]], *, type: Any = None) -> Any:
        """Run ``fn()`` once per task: its result (msgspec-encodable) is recorded, and a redelivered task
        gets the recorded result back instead of running ``fn`` again. ``type`` decodes it
        (default: ``fn``'s return annotation)."""
        return self._sync_or_async(self._step(name, fn, type))

    async def _step(self, name: str, fn: Callable[[], Any], kind: Any) -> Any:
        decode_as = kind if kind is not None else _return_type(fn)

        async def call() -> Any:
            if inspect.iscoroutinefunction(fn):
                return await fn()
            value = await asyncio.to_thread(fn)
            return await value if inspect.isawaitable(value) else value

        return await self.journaled("step", (name,), call, decode_as)

    # durable waits (agents/app/waits.py) ---------------------------------------------
    def sleep(self, seconds: float) -> Any:
        """Sleep ``seconds`` durably: the task parks in Redis and the worker is free; the handler runs
        again when the timer runs out, replaying its journaled calls (a finished sleep returns at once)."""
        return self._sync_or_async(waits.sleep(self, seconds))

    def wait_for(self, name: str, *, timeout: float | None = None, on_timeout: str | None = None) -> Any:
        """The data of the signal ``name`` sent to this run (``POST /v1/runs/{id}/signal``); parks like
        ``sleep``. Past ``timeout`` seconds: ``WaitTimeout``, or the run goes to role ``on_timeout``."""
        return self._sync_or_async(waits.wait_for(self, name, timeout, on_timeout))

    async def journaled(self, kind: CallKind, inputs: tuple[Any, ...], call: Callable[[], Awaitable[T]],
                         decode_as: Any) -> T:
        """Call number ``calls.seq`` of this hop: its recorded result (decoded as ``decode_as``) when the
        journal holds the same call, else ``await call()``, recorded before it returns."""
        calls = self._calls
        fp = fingerprint(kind, *inputs)
        rec = await calls.recorded(kind, fp)
        if rec is not None:
            value: T = msgspec.json.decode(rec.value, type=decode_as)
            if calls.found is not None and calls.seq not in calls.found.own:
                await calls.record(kind, fp, bytes(rec.value))  # reused from a fork's source: keep it as ours
            calls.replayed += 1
        else:
            value = await call()
            await calls.record(kind, fp, _encode(value))
            calls.made += 1
        calls.seq += 1
        return value

    # plain handlers run in a thread: run the call on the worker's loop and wait -----------
    def bind_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """The event loop the handler's calls run on (set by ``run_handler``)."""
        self._loop = loop

    def _sync_or_async(self, coro: Coroutine[Any, Any, T]) -> Any:
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._loop is None:
                coro.close()
                raise RuntimeError("this context's handler is not running (no event loop to call through)") from None
            return asyncio.run_coroutine_threadsafe(coro, self._loop).result()
        return coro


def _return_type(fn: Callable[..., Any]) -> Any:
    try:
        hint = typing.get_type_hints(fn).get("return", Any)
    except Exception:  # unresolvable annotations: decode as plain JSON
        return Any
    origin = typing.get_origin(hint)
    if origin in (Awaitable, Coroutine) or (origin is not None and getattr(origin, "__name__", "") == "Coroutine"):
        args = typing.get_args(hint)
        return args[-1] if args else Any
    return hint


def as_messages(messages: str | Sequence[Any]) -> list[ChatMessage]:
    """``messages`` as ``ChatMessage`` s: a str is one user message; dicts are converted."""
    if isinstance(messages, str):
        return [ChatMessage(role="user", content=messages)]
    return [m if isinstance(m, ChatMessage) else msgspec.convert(m, ChatMessage) for m in messages]
