"""A Pydantic AI ``Agent`` run as a baton role: its model calls through ``ctx.chat_once`` (a real
``baton serve-model`` process, and the scripted OpenAI-compatible model where the model must choose
a tool), and a redelivered task replayed from the call journal in real Redis."""

from __future__ import annotations

import asyncio

import redis
from pydantic_ai import Agent

from baton.agents.adapters.pydantic_ai_agent import pydantic_role
from baton.agents.app import App, Context, Next, run_handler
from baton.agents.backends import load_backend
from baton.broker import Keys
from baton.protocol import Task
from baton.protocol.chat import ChatMessage, ChatRequest
from tests.app.gateway import EchoGateway, item
from tests.app.test_context import services
from tests.scripted_model import ScriptedModel, call, say

looked_up: list[int] = []


def _app() -> App:
    agent = Agent(instructions="Answer about orders.")

    @agent.tool_plain
    def lookup(order: int) -> str:
        """The status of an order."""
        looked_up.append(order)
        return f"order {order}: shipped"

    app = App("pyd-support")
    pydantic_role(app, "answer", agent)
    return app


def test_model_calls_go_through_ctx_chat_and_redelivery_replays_them(client: redis.Redis, keys: Keys) -> None:
    app = _app()
    looked_up.clear()
    with ScriptedModel([call("lookup", order=42), say("Status: {tool_results}")]) as model:
        gw = EchoGateway(chat_backend=load_backend(model.url()))
        task = Task(role="answer", task="Where is order 42?", run_id="run-pyd-1")
        svc = services(client, keys)
        outs = []
        for deliveries in (1, 2):
            ctx = Context(gw, item(task, deliveries), app.roles["answer"], svc)
            outs.append(asyncio.run(run_handler(app.handlers["answer"], ctx, task.task)))
        assert outs == [Next("Status: order 42: shipped")] * 2
        assert (model.chat_calls, gw.chats) == (2, 2)  # the redelivery replayed both answers from the journal
        assert (ctx.calls.replayed, ctx.calls.made) == (2, 0)
        first = model.requests[0]
        assert [t["function"]["name"] for t in first["tools"]] == ["lookup"]
        assert first["messages"][0] == {"role": "system", "content": "Answer about orders."}
        assert model.requests[1]["messages"][-1]["role"] == "tool"
    assert looked_up == [42, 42]  # Pydantic AI runs its own tools: wrap side effects in ctx.step


def test_an_agent_answers_through_serve_model(client: redis.Redis, keys: Keys, model_server: str) -> None:
    app = App("pyd-plain")
    pydantic_role(app, "writer", Agent(instructions="Write one sentence."))
    gw = EchoGateway(chat_backend=load_backend(model_server))
    task = Task(role="writer", task="Explain streams.", run_id="run-pyd-2")
    ctx = Context(gw, item(task), app.roles["writer"], services(client, keys))
    out = asyncio.run(run_handler(app.handlers["writer"], ctx, task.task))
    direct = load_backend(model_server).chat([ChatRequest(messages=[
        ChatMessage(role="system", content="Write one sentence."),
        ChatMessage(role="user", content="Explain streams.")])])[0].message.content
    assert out == Next(direct or "") and direct and gw.chats == 1
