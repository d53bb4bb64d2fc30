"""The model server passes tools through to its backend and answers tool calls in OpenAI's shape.

The server relays to a backend that can call tools (the HTTP backend on the scripted test model);
the official ``openai`` client talks to it over a real socket, streamed and not.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import openai
import pytest
import uvicorn

from baton.agents.backends.http import HTTPBackend
from baton.agents.serving.server import create_app
from baton.broker import free_port
from tests.scripted_model import ScriptedModel, call, say

TOOLS: Any = [{"type": "function", "function": {"name": "orders__lookup", "description": "Find an order",
                                                 "parameters": {"type": "object",
                                                                "properties": {"order": {"type": "integer"}}}}}]


@pytest.fixture
def relay(scripted_model: Callable[..., ScriptedModel]) -> Iterator[tuple[openai.OpenAI, ScriptedModel]]:
    scripted = scripted_model([call("orders__lookup", order=42), say("found: {tool_results}")])
    backend = HTTPBackend(scripted.url())
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(backend, "relay", batch_wait_ms=0), host="127.0.0.1",
                                           port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline and thread.is_alive(), "the model server did not start"
        time.sleep(0.05)
    yield openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0), scripted
    server.should_exit = True
    thread.join(10)
    backend.close()


def test_tools_pass_through_and_tool_calls_come_back(relay: tuple[openai.OpenAI, ScriptedModel]) -> None:
    oai, scripted = relay
    messages: Any = [{"role": "user", "content": "where is my order?"}]
    first = oai.chat.completions.create(model="relay", messages=messages, tools=TOOLS, tool_choice="required",
                                        response_format={"type": "json_object"}, max_tokens=20)
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    (tool_call,) = choice.message.tool_calls or []
    assert tool_call.type == "function" and tool_call.function.name == "orders__lookup"  # type: ignore[union-attr]
    assert json.loads(tool_call.function.arguments) == {"order": 42}  # type: ignore[union-attr]
    sent = scripted.requests[0]
    assert sent["tools"] == TOOLS and sent["tool_choice"] == "required" and sent["max_tokens"] == 20
    assert sent["response_format"] == {"type": "json_object"}

    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": tool_call.id, "content": "shipped"}]
    final = oai.chat.completions.create(model="relay", messages=messages, tools=TOOLS)
    assert final.choices[0].message.content == "found: shipped" and final.choices[0].finish_reason == "stop"
    assert scripted.requests[1]["messages"][1]["tool_calls"][0]["id"] == tool_call.id


def test_streamed_tool_calls_are_deltas_the_client_reads(relay: tuple[openai.OpenAI, ScriptedModel]) -> None:
    oai, _ = relay
    chunks = list(oai.chat.completions.create(model="relay", messages=[{"role": "user", "content": "x"}],
                                              tools=TOOLS, stream=True))
    deltas = [d for c in chunks if c.choices for d in (c.choices[0].delta.tool_calls or [])]
    assert [(d.index, d.function.name, d.function.arguments) for d in deltas] == [  # type: ignore[union-attr]
        (0, "orders__lookup", '{"order": 42}')]
    assert chunks[-1].choices[0].finish_reason == "tool_calls"


def test_a_bad_chat_request_is_a_400_with_the_reason(relay: tuple[openai.OpenAI, ScriptedModel]) -> None:
    oai, _ = relay
    with pytest.raises(openai.BadRequestError, match="role"):
        oai.chat.completions.create(model="relay", messages=[{"role": "robot", "content": "x"}])  # type: ignore[list-item,misc]


def test_concurrent_chat_requests_share_one_backend_call(scripted_model: Callable[..., ScriptedModel]) -> None:
    scripted = scripted_model([say("hello {last_user}")])
    backend = HTTPBackend(scripted.url())
    app = create_app(backend, "relay", batch_wait_ms=2000, max_batch=4)
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.05)
        oai = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        with ThreadPoolExecutor(4) as pool:
            answers = list(pool.map(lambda i: oai.chat.completions.create(
                model="relay", messages=[{"role": "user", "content": f"n{i}"}]).choices[0].message.content, range(4)))
        assert answers == [f"hello n{i}" for i in range(4)]
        assert app.state.batcher.batches == 1 and app.state.batcher.largest == 4 and scripted.chat_calls == 4
    finally:
        server.should_exit = True
        thread.join(10)
        backend.close()
