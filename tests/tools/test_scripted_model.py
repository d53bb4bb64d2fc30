"""The scripted test model speaks the wire format the official ``openai`` client parses."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import openai

from tests.scripted_model import ScriptedModel, call, calls, say


def test_the_openai_client_parses_scripted_tool_calls_then_the_answer(
        scripted_model: Callable[..., ScriptedModel]) -> None:
    server = scripted_model([calls(call("orders.lookup", order=42), call("clock")), say("done: {tool_results}")])
    oai = openai.OpenAI(base_url=server.base_url, api_key="unused")
    messages: list[Any] = [{"role": "user", "content": "where is 42?"}]
    tools: Any = [{"type": "function", "function": {"name": "orders__lookup", "parameters": {"type": "object"}}}]
    first = oai.chat.completions.create(model="scripted", messages=messages, tools=tools, tool_choice="auto")
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    wanted = choice.message.tool_calls or []
    assert [(c.type, c.function.name, json.loads(c.function.arguments)) for c in wanted] == [  # type: ignore[union-attr]
        ("function", "orders.lookup", {"order": 42}), ("function", "clock", {})]
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": wanted[0].id, "content": "shipped"},
                 {"role": "tool", "tool_call_id": wanted[1].id, "content": "noon"}]
    final = oai.chat.completions.create(model="scripted", messages=messages, tools=tools)
    assert final.choices[0].message.content == "done: shipped; noon" and final.choices[0].finish_reason == "stop"
    assert server.chat_calls == 2 and server.requests[0]["tools"] == tools
    assert server.requests[0]["tool_choice"] == "auto"


def test_scripts_per_model_and_the_last_turn_repeats(scripted_model: Callable[..., ScriptedModel]) -> None:
    server = scripted_model({"a": [say("from a")], "default": [call("loop")]})
    oai = openai.OpenAI(base_url=server.base_url, api_key="unused")
    user: Any = [{"role": "user", "content": "x"}]
    assert oai.chat.completions.create(model="a", messages=user).choices[0].message.content == "from a"
    looping: Any = user + [{"role": "assistant", "tool_calls": [{"id": "c", "type": "function",
                                                               "function": {"name": "loop", "arguments": "{}"}}]},
                           {"role": "tool", "tool_call_id": "c", "content": "again"}]
    again = oai.chat.completions.create(model="other", messages=looping).choices[0].message.tool_calls
    assert again is not None and again[0].function.name == "loop"  # type: ignore[union-attr]
    assert [m.id for m in oai.models.list()] == ["a", "default", "scripted"]
