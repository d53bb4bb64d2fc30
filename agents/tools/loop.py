"""The OpenAI tool-calling loop, as a function over callables.

:func:`run_tool_loop` calls the model (``chat``); while its answer asks for tools
(``tool_calls``), it runs each call in order (``run_tool``), appends the assistant message and
one ``tool`` message per call (the tool's output, or ``error: ...``) to the conversation, and
calls the model again, up to ``max_tool_rounds`` rounds of calls. It knows nothing of workers or
Redis: ``Context.chat`` passes the role's gateway calls, and tests pass plain functions.

Choices, as the OpenAI Agents SDK makes them:

- calls of one answer run one after another, in the order the model gave them, so a call
  journal that numbers calls sees the same sequence when a run is replayed;
- a call to a tool outside ``allowed`` is not run: the model reads ``error: tool ... is not
  allowed`` and may answer otherwise; arguments that are not a JSON object are an error result
  too, never an exception;
- a ``tool_choice`` that forces a call (``"required"`` or a named function) applies to the first
  request only; later requests in the loop leave the choice to the model, which would otherwise
  never stop calling;
- a model that still asks for tools after ``max_tool_rounds`` rounds raises
  :class:`ToolRoundsExceeded` (its calls of that answer are not run).

A tool call's name is the baton tool name, or its wire form (``.`` as ``__``, see
:func:`~baton.agents.tools.schema.wire_name`), since OpenAI allows no dots in function names.
``on_call`` and ``on_result`` hooks (plain or async) see every call before it runs and every
result after; :attr:`LoopResult.calls` lists them for the scratchpad's ``meta``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import msgspec

from ...protocol.chat import ChatMessage, ChatRequest, ChatResult, ToolCall, tool_calls_of
from .base import Tool, ToolContext, ToolError
from .runner import ToolOutcome
from .schema import wire_name

__all__ = ["DEFAULT_MAX_TOOL_ROUNDS", "LoopResult", "ToolRoundsExceeded", "local_tools", "run_tool_loop"]

DEFAULT_MAX_TOOL_ROUNDS = 8
"""Rounds of tool calls one ``chat`` may take unless the caller says otherwise."""

ChatFn = Callable[[ChatRequest], Awaitable[ChatResult]]
RunToolFn = Callable[[str, Mapping[str, Any]], Awaitable[ToolOutcome]]
OnCall = Callable[[str, Mapping[str, Any], str], Awaitable[None] | None]
OnResult = Callable[[ToolOutcome], Awaitable[None] | None]


class ToolRoundsExceeded(RuntimeError):
    """The model still asked for tools after ``max_tool_rounds`` rounds of calls."""

    def __init__(self, rounds: int, pending: list[str]) -> None:
        super().__init__(f"the model still asked for tools ({', '.join(pending)}) after {rounds} "
                         f"round(s) of tool calls (max_tool_rounds={rounds})")
        self.rounds = rounds
        self.pending = pending


@dataclass(frozen=True, slots=True)
class LoopResult:
    """The final answer and how it was reached.

    Attributes:
        result: the model's last answer (no tool calls).
        messages: the whole conversation, the request's messages first, the final answer last.
        calls: every tool call made, in order, with its output or error.
        rounds: rounds of tool calls taken; ``requests`` model calls made (``rounds + 1``).
    """

    result: ChatResult
    messages: list[ChatMessage]
    calls: list[ToolOutcome] = field(default_factory=list)
    rounds: int = 0

    @property
    def requests(self) -> int:
        """Model calls made."""
        return self.rounds + 1

    @property
    def text(self) -> str:
        """The final answer's text."""
        return self.result.message.content or ""

    def meta(self) -> list[dict[str, Any]]:
        """The calls as JSON-able dicts, for the scratchpad's ``meta.tools``."""
        return [c.as_dict() for c in self.calls]


async def _hook(fn: Callable[..., Awaitable[None] | None] | None, *args: Any) -> None:
    if fn is not None:
        done = fn(*args)
        if inspect.isawaitable(done):
            await done


def _resolve(name: str, names: Collection[str]) -> str:
    """The baton tool a model's function name means (its wire form mapped back), else ``name``."""
    if name in names:
        return name
    return next((n for n in names if wire_name(n) == name), name.replace("__", "."))


def _arguments(call: ToolCall) -> tuple[dict[str, Any], str]:
    """A call's arguments as a dict, or the reason they are not a JSON object."""
    text = call.function.arguments.strip() or "{}"
    try:
        args = json.loads(text)
    except ValueError as exc:
        return {}, f"arguments are not valid JSON ({exc}): {text[:200]}"
    if not isinstance(args, dict):
        return {}, f"arguments must be a JSON object, got {type(args).__name__}"
    return args, ""


async def run_tool_loop(
    request: ChatRequest,
    *,
    chat: ChatFn,
    run_tool: RunToolFn,
    allowed: Collection[str] | None = None,
    max_tool_rounds: int = DEFAULT_MAX_TOOL_ROUNDS,
    on_call: OnCall | None = None,
    on_result: OnResult | None = None,
    role: str = "",
) -> LoopResult:
    """Answer ``request``, running the tools the model asks for (see the module docstring).

    Args:
        chat: one model call.
        run_tool: runs baton tool ``name`` with ``args``; failures are outcomes with ``error``.
        allowed: the baton tool names the model may call (``None``: every name ``run_tool`` takes).
        max_tool_rounds: rounds of tool calls at most (0: the first answer must be final).
        on_call: ``on_call(tool, args, call_id)`` before each call runs.
        on_result: ``on_result(outcome)`` after each call (refused ones included).
        role: named in the refusal of a tool outside ``allowed``.
    """
    if max_tool_rounds < 0:
        raise ValueError(f"max_tool_rounds must be >= 0, got {max_tool_rounds}")
    messages = list(request.messages)
    known = set(allowed) if allowed is not None else set()
    calls: list[ToolOutcome] = []
    current = request
    for rounds in range(max_tool_rounds + 1):
        result = await chat(current)
        wanted = tool_calls_of(result)
        messages.append(result.message)
        if not wanted:
            return LoopResult(result=result, messages=messages, calls=calls, rounds=rounds)
        if rounds == max_tool_rounds:
            raise ToolRoundsExceeded(max_tool_rounds, [c.function.name for c in wanted])
        for call in wanted:
            outcome = await _one_call(call, run_tool, allowed, known, role, on_call)
            calls.append(outcome)
            await _hook(on_result, outcome)
            content = f"error: {outcome.error}" if outcome.error else outcome.output
            messages.append(ChatMessage(role="tool", tool_call_id=call.id, content=content))
        forced = current.tool_choice is not None and current.tool_choice not in ("auto", "none")
        current = _with_messages(current, messages, tool_choice=None if forced else current.tool_choice)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


async def _one_call(call: ToolCall, run_tool: RunToolFn, allowed: Collection[str] | None, known: set[str],
                    role: str, on_call: OnCall | None) -> ToolOutcome:
    name = _resolve(call.function.name, known)
    args, bad = _arguments(call)
    await _hook(on_call, name, args, call.id)
    started = time.monotonic()
    if allowed is not None and name not in known:
        who = f" for role {role!r}" if role else ""
        return ToolOutcome(name, args, error=f"tool {name!r} is not allowed{who} "
                                             f"(allowed: {', '.join(sorted(known)) or 'none'})",
                           call_id=call.id, where="refused")
    if bad:
        return ToolOutcome(name, args, error=bad, call_id=call.id, where="refused")
    outcome = await run_tool(name, args)
    ms = outcome.ms or (time.monotonic() - started) * 1000
    return replace(outcome, call_id=outcome.call_id or call.id, ms=ms)


def _with_messages(request: ChatRequest, messages: list[ChatMessage], **changes: Any) -> ChatRequest:
    """``request`` with the conversation ``messages`` (and other fields changed)."""
    return msgspec.structs.replace(request, messages=list(messages), **changes)


def local_tools(tools: Mapping[str, Tool] | Collection[Tool], ctx: ToolContext | None = None) -> RunToolFn:
    """A ``run_tool`` over tool objects in this process (no allow-list, no timeout): async ones are
    awaited, others run in a thread; every failure is an outcome with ``error``."""
    by_name = dict(tools) if isinstance(tools, Mapping) else {t.name: t for t in tools}
    context = ctx if ctx is not None else ToolContext()

    async def run(name: str, args: Mapping[str, Any]) -> ToolOutcome:
        tool = by_name.get(name)
        if tool is None:
            return ToolOutcome(name, args, error=f"unknown tool {name!r} (known: {', '.join(sorted(by_name))})")
        try:
            arun = getattr(tool, "arun", None)
            output = await arun(args, context) if arun is not None else await asyncio.to_thread(tool.run, args, context)
        except ToolError as exc:
            return ToolOutcome(name, args, error=str(exc) or type(exc).__name__)
        except Exception as exc:  # noqa: BLE001 - a tool's crash is the model's error result
            return ToolOutcome(name, args, error=f"tool {name!r} failed: {type(exc).__name__}: {exc}")
        return ToolOutcome(name, args, output=str(output))

    return run
