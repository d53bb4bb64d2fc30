"""An OpenAI Agents SDK ``Agent`` run as a baton role: its model calls through ``ctx.chat_once``
(a real ``baton serve-model`` process, and the scripted OpenAI-compatible model where the model
must choose tools), its function tools as baton tools, its handoffs to the app's roles as baton
handoffs, and a redelivered task replayed from the call journal in real Redis."""

from __future__ import annotations

import asyncio
from pathlib import Path

import redis

from baton.agents.app import App, Context, Handoff, Next, run_handler
from baton.agents.backends import load_backend
from baton.agents.workflow.spec import RoleSpec
from baton.broker import Keys
from baton.protocol import Task
from tests.adapters.sdk import openai_agents
from tests.app.gateway import EchoGateway, item
from tests.app.test_context import services
from tests.scripted_model import ScriptedModel, call

sdk = openai_agents()
from baton.agents.adapters.openai_agents_sdk import agent_role  # noqa: E402  (after the SDK is importable)


def lookup_order(order_id: str) -> str:
    """The status of an order."""
    return f"order {order_id}: paid twice"


def refund(ctx: Context, task: str) -> str:
    return f"refunded: {task}"


def _app() -> tuple[App, RoleSpec]:
    app = App("sdk-support")
    billing = sdk.Agent(name="billing", instructions="Refund what was paid twice.")
    triage = sdk.Agent(name="triage", instructions="Find the order, then hand billing questions to billing.",
                       tools=[sdk.function_tool(lookup_order)], handoffs=[billing])
    agent_role(app, triage, next="billing")
    app.role("billing")(refund)
    return app, app.roles["triage"]


def test_tools_run_as_baton_tools_handoffs_become_baton_handoffs_and_redelivery_replays(
    client: redis.Redis, keys: Keys
) -> None:
    app, spec = _app()
    handler = app.handlers["triage"]
    script = [call("lookup_order", order_id="42"), call("transfer_to_billing", task="refund order 42")]
    with ScriptedModel(script) as model:
        gw = EchoGateway(chat_backend=load_backend(model.url()))
        task = Task(role="triage", task="I was charged twice for order 42", run_id="run-sdk-1")
        svc = services(client, keys)
        for deliveries in (1, 2):
            ctx = Context(gw, item(task, deliveries), spec, svc)
            assert asyncio.run(run_handler(handler, ctx, task.task)) == Handoff("billing", "refund order 42")
        assert (model.chat_calls, gw.chats, gw.tools) == (2, 2, ["lookup_order"])  # the redelivery called nothing
        assert (ctx.calls.replayed, ctx.calls.made) == (3, 0)
        first, second = model.requests
        offered = {t["function"]["name"] for t in first["tools"]}
        assert offered == {"lookup_order", "transfer_to_billing"}
        assert first["messages"][0] == {"role": "system",
                                        "content": "Find the order, then hand billing questions to billing."}
        assert second["messages"][-1]["role"] == "tool"
        assert second["messages"][-1]["content"] == "order 42: paid twice"  # the baton tool's output


def test_an_agent_answers_through_serve_model_and_replays_from_the_journal(
    client: redis.Redis, keys: Keys, model_server: str, tmp_path: Path
) -> None:
    app = App("sdk-plain")
    agent_role(app, sdk.Agent(name="writer", instructions="Write one sentence."))
    gw = EchoGateway(chat_backend=load_backend(model_server))
    task = Task(role="writer", task="Explain streams.", run_id="run-sdk-2")
    svc = services(client, keys)
    outs = []
    for deliveries in (1, 2):
        ctx = Context(gw, item(task, deliveries), app.roles["writer"], svc)
        outs.append(asyncio.run(run_handler(app.handlers["writer"], ctx, task.task)))
    direct = load_backend(model_server).chat([ctx_request()])[0].message.content
    assert outs[0] == outs[1] == Next(direct) and direct
    assert gw.chats == 1 and (ctx.calls.replayed, ctx.calls.made) == (1, 0)


def ctx_request():  # type: ignore[no-untyped-def]
    from baton.protocol.chat import ChatMessage, ChatRequest

    return ChatRequest(messages=[ChatMessage(role="system", content="Write one sentence."),
                                 ChatMessage(role="user", content="Explain streams.")])
