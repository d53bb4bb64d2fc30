"""The tool-calling loop against a real OpenAI-compatible server (scripted tool calls) over HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from baton.agents.backends.http import HTTPBackend
from baton.agents.tools.loop import LoopResult, ToolRoundsExceeded, local_tools, run_tool_loop
from baton.agents.tools.runner import ToolOutcome
from baton.agents.tools.schema import function_tool
from baton.protocol.chat import ChatMessage, ChatRequest, ChatResult, NamedFunction, NamedToolChoice
from tests.scripted_model import ScriptedModel, call, calls, say

ORDERS = {42: "shipped", 7: "lost"}


async def lookup(order: int) -> str:
    """Where an order is."""
    await asyncio.sleep(0)
    return ORDERS.get(order, "unknown")


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def forbidden() -> str:
    """A tool the role may not call."""
    raise AssertionError("never runs")


TOOLS = {"orders.lookup": function_tool(lookup, name="orders.lookup"), "add": function_tool(add),
         "forbidden": function_tool(forbidden)}


def loop(server: ScriptedModel, request: ChatRequest, **kwargs: Any) -> LoopResult:
    backend = HTTPBackend(server.url())

    async def chat(req: ChatRequest) -> ChatResult:
        return (await asyncio.to_thread(backend.chat, [req]))[0]

    try:
        return asyncio.run(run_tool_loop(request, chat=chat, run_tool=local_tools(TOOLS), **kwargs))
    finally:
        backend.close()


def ask(text: str, *names: str, **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=[ChatMessage(role="user", content=text)],
                       tools=[TOOLS[n].definition() for n in names], **kwargs)


def test_tool_calls_run_and_their_results_reach_the_model(scripted_model: Callable[..., ScriptedModel]) -> None:
    server = scripted_model([calls(call("orders__lookup", order=42), call("add", a=2, b=3)),
                             call("orders.lookup", order=7), say("answer: {tool_results}")])
    events: list[tuple[str, Any]] = []

    async def on_result(outcome: ToolOutcome) -> None:
        events.append(("result", outcome.output))

    result = loop(server, ask("where?", "orders.lookup", "add", response_format={"type": "json_object"},
                              tool_choice=NamedToolChoice(function=NamedFunction(name="orders__lookup"))),
                  allowed={"orders.lookup", "add"}, on_call=lambda tool, args, cid: events.append((tool, args)),
                  on_result=on_result)
    assert result.text == "answer: shipped; 5; lost" and result.rounds == 2 and server.chat_calls == 3
    assert [(c.tool, c.output) for c in result.calls] == [("orders.lookup", "shipped"), ("add", "5"),
                                                          ("orders.lookup", "lost")]
    assert events == [("orders.lookup", {"order": 42}), ("result", "shipped"), ("add", {"a": 2, "b": 3}),
                      ("result", "5"), ("orders.lookup", {"order": 7}), ("result", "lost")]
    assert [m.role for m in result.messages] == ["user", "assistant", "tool", "tool", "assistant", "tool", "assistant"]
    assert result.messages[2].tool_call_id == result.messages[1].tool_calls[0].id  # type: ignore[index]
    first, second = server.requests[0], server.requests[1]
    assert [t["function"]["name"] for t in first["tools"]] == ["orders__lookup", "add"]
    assert first["tools"][0]["function"]["parameters"]["properties"]["order"] == {"type": "integer"}
    assert first["tool_choice"] == {"type": "function", "function": {"name": "orders__lookup"}}
    assert first["response_format"] == {"type": "json_object"} == second["response_format"]
    assert "tool_choice" not in second  # a forced choice holds for the first request only
    assert second["messages"][1]["tool_calls"][0]["function"]["name"] == "orders__lookup"
    assert result.meta()[0]["tool"] == "orders.lookup" and result.meta()[0]["call_id"] == "call_0_0"


def test_the_allow_list_holds_and_bad_arguments_are_results(scripted_model: Callable[..., ScriptedModel]) -> None:
    server = scripted_model([calls(call("forbidden"), call("add", a="x", b=1), call("nope")), say("{tool_results}")])
    result = loop(server, ask("go", "add"), allowed={"add"}, role="triage")
    errors = [c.error for c in result.calls]
    assert errors[0] == "tool 'forbidden' is not allowed for role 'triage' (allowed: add)"
    assert errors[1].startswith("bad arguments for 'add'") and "not allowed" in errors[2]
    assert result.text.count("error: ") == 3 and result.calls[0].where == "refused"


def test_max_tool_rounds_stops_a_model_that_never_answers(scripted_model: Callable[..., ScriptedModel]) -> None:
    server = scripted_model([call("add", a=1, b=1)])
    with pytest.raises(ToolRoundsExceeded, match=r"after 3 round\(s\)") as err:
        loop(server, ask("go", "add"), max_tool_rounds=3)
    assert err.value.pending == ["add"] and server.chat_calls == 4
    server2 = scripted_model([say("plain")])
    assert loop(server2, ask("go"), max_tool_rounds=0).text == "plain"
