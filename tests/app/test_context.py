"""``Context`` over a ``Gateway``: every call journaled, replayed on redelivery without calling again,
outcomes, shared memory, custom events, plain handlers in a thread, failure classification."""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest
import redis

from baton import App, Context, Fail, FanOut, Finish, Handoff, Next, Retry
from baton.agents.app import AppServices, BadReturn, failure_reason, is_transient, run_handler
from baton.agents.app.outcome import as_outcome
from baton.agents.backends.errors import ModelUnavailable
from baton.agents.runtime.events import EventWriter
from baton.agents.workflow.spec import RoleSpec
from baton.broker import Keys, read_events
from baton.broker.fork import ForkOptions, replay_run
from baton.broker.journal import JOURNAL_FROM
from baton.protocol import Custom, Task
from tests.app.gateway import EchoGateway, item

SPEC = RoleSpec(role="writer", agent="Wes", handler="tests.app.sample_apps:answer")


def services(client: redis.Redis, keys: Keys, *, journal: bool = True) -> AppServices:
    events = EventWriter(client, keys)
    return AppServices.for_worker(client, keys, journal=journal, events=events)


def three_calls_and_a_step(log: Path, gateway_calls: list[str]):  # type: ignore[no-untyped-def]
    async def handler(ctx: Context, task: str) -> str:
        a = await ctx.generate(f"one {task}")
        b = await ctx.generate("two")

        def append() -> int:
            with log.open("a") as f:
                f.write("charged\n")
            return len(log.read_text().splitlines())

        lines = await ctx.step("charge", append)
        c = await ctx.generate("three")
        if len(gateway_calls) < 4:
            raise ConnectionError("crash in the middle")  # the first delivery dies here
        d = await ctx.generate("four")
        return f"{a}|{b}|{c}|{d}|{lines}"

    return handler


def test_redelivery_replays_recorded_calls_and_steps(client: redis.Redis, keys: Keys, tmp_path: Path) -> None:
    gw = EchoGateway()
    log = tmp_path / "charges.txt"
    handler = three_calls_and_a_step(log, gw.generated)
    task = Task(role="writer", task="hello", run_id="run-1")
    svc = services(client, keys)

    first = Context(gw, item(task), SPEC, svc)
    with pytest.raises(ConnectionError):
        asyncio.run(run_handler(handler, first, task.task))
    assert (len(gw.generated), first.calls.made) == (3, 4)
    gw.generated.append("(the crash lost nothing recorded)")  # lets the second delivery go on

    second = Context(gw, item(task, deliveries=2), SPEC, svc)
    out = asyncio.run(run_handler(handler, second, task.task))
    assert isinstance(out, Next) and out.text.endswith("|1")
    assert (second.calls.replayed, second.calls.made) == (4, 1)
    assert len(gw.generated) == 3 + 1 + 1  # 4 model calls in all, not 7
    assert log.read_text() == "charged\n"  # the step ran once


def test_journal_off_calls_again(client: redis.Redis, keys: Keys) -> None:
    gw = EchoGateway()
    task = Task(role="writer", task="x", run_id="run-2")

    async def handler(ctx: Context, task: str) -> str:
        return await ctx.generate(task)

    for deliveries in (1, 2):
        asyncio.run(run_handler(handler, Context(gw, item(task, deliveries), SPEC, services(client, keys,
                                                                                            journal=False)), "x"))
    assert len(gw.generated) == 2
    assert not client.keys("*journal*")


def test_a_call_that_differs_from_its_record_runs_again_and_so_do_the_rest(client: redis.Redis, keys: Keys) -> None:
    gw = EchoGateway()
    task = Task(role="writer", task="x", run_id="run-3")
    svc = services(client, keys)

    def make(prompts: list[str]):  # type: ignore[no-untyped-def]
        async def handler(ctx: Context, task: str) -> str:
            return "|".join([await ctx.generate(p) for p in prompts])
        return handler

    asyncio.run(run_handler(make(["a", "b", "c"]), Context(gw, item(task), SPEC, svc), "x"))
    ctx = Context(gw, item(task, 2), SPEC, svc)
    asyncio.run(run_handler(make(["a", "B", "c"]), ctx, "x"))
    assert (ctx.calls.replayed, ctx.calls.made) == (1, 2)
    assert gw.generated == ["a", "b", "c", "B", "c"]


def test_replay_with_reuse_journal_reuses_the_source_hop(client: redis.Redis, keys: Keys) -> None:
    gw = EchoGateway()
    svc = services(client, keys)
    source = Task(role="writer", task="x", run_id="src-run", workflow="seed")
    client.hset(keys.run("src-run"), mapping={"status": "done", "workflow": "seed", "task": "x"})
    client.hset(keys.pad("src-run", "Wes"), "1-0", msgspec.json.encode(
        {"task": "x", "response": "r", "meta": {"hop": 0, "role": "writer"}}))
    client.zadd(keys.pads("src-run"), {"Wes": 1})

    async def handler(ctx: Context, task: str) -> str:
        return await ctx.generate(task) + await ctx.tool("calculator", expression="6*7")

    asyncio.run(run_handler(handler, Context(gw, item(source), SPEC, svc), "x"))
    assert (len(gw.generated), gw.tools) == (1, ["calculator"])
    for reuse in (True, False):
        new_id = replay_run(client, keys, "src-run", options=ForkOptions(reuse_journal=reuse))
        assert (client.hget(keys.run(new_id), JOURNAL_FROM) == b"src-run") is reuse
        new = Task(role="writer", task="x", run_id=new_id)
        ctx = Context(gw, item(new), SPEC, svc)
        out = asyncio.run(run_handler(handler, ctx, "x"))
        assert isinstance(out, Next) and out.text.endswith("42")
        assert ctx.calls.replayed == (2 if reuse else 0)
    assert (len(gw.generated), gw.tools) == (2, ["calculator", "calculator"])


def test_plain_handlers_run_in_a_thread_and_call_through_the_loop(client: redis.Redis, keys: Keys) -> None:
    gw = EchoGateway()
    task = Task(role="writer", task="x", run_id="run-4")

    def handler(ctx: Context, task: str) -> str:
        text = ctx.generate(f"plain {task}")
        counted = ctx.step("count", lambda: 3)
        return f"{text} {counted} {ctx.tool('calculator', expression='1+1')}"

    out = asyncio.run(run_handler(handler, Context(gw, item(task), SPEC, services(client, keys)), "x"))
    assert isinstance(out, Next) and out.text.startswith("plain x") and out.text.endswith(" 3 2")


def test_outcomes_shared_memory_events_and_identity(client: redis.Redis, keys: Keys) -> None:
    gw = EchoGateway()
    task = Task(role="writer", task="x", run_id="run-5", hop=2)
    ctx = Context(gw, item(task, 3), SPEC, services(client, keys))
    ctx.shared["topic"] = "refunds"
    ctx.shared.update(owner="Wes")
    assert dict(ctx.shared) == {"owner": "Wes", "topic": "refunds"}
    assert client.hgetall(keys.memory("run-5")) == {b"topic": b"refunds", b"owner": b"Wes"}
    ctx.emit({"score": 0.5, "tags": ["a"]})
    events = [e for _, e in read_events(client, keys, "run-5")]
    assert events == [Custom(run_id="run-5", at=events[0].at, role="writer", agent="Wes", hop=2, msg_id=task.id,
                             data={"score": 0.5, "tags": ["a"]})]
    again = Context(gw, item(task, 4), SPEC, services(client, keys))
    assert (ctx.run_id, ctx.hop, ctx.history, ctx.deliveries) == ("run-5", 2, [], 3)
    assert ctx.idempotency_key == again.idempotency_key != Context(
        gw, item(Task(role="writer", task="x", run_id="run-5", hop=2)), SPEC, services(client, keys)).idempotency_key
    assert ctx.handoff("critic", "check") == Handoff("critic", "check") == ctx.outcome
    assert ctx.fan_out("w", ["a", "b"]) == FanOut("w", ["a", "b"])
    assert ctx.finish("r") == Finish("r")
    assert ctx.fail("no") == Fail("no") == ctx.outcome


def test_what_handlers_return() -> None:
    assert as_outcome("text", None, "h") == Next("text")
    assert as_outcome(None, Finish("r"), "h") == Finish("r")
    assert as_outcome(Finish("r"), Finish("r"), "h") == Finish("r")
    with pytest.raises(BadReturn, match="returned int; return a str or an Outcome"):
        as_outcome(3, None, "h")
    with pytest.raises(BadReturn, match="also returned a str"):
        as_outcome("x", Finish("r"), "h")
    with pytest.raises(BadReturn, match="returned NoneType"):
        as_outcome(None, None, "h")


def test_failure_classification_and_reason() -> None:
    app = App("f", retryable=(ConnectionResetError,))
    assert is_transient(Retry("later"))
    assert is_transient(ModelUnavailable("m", "down"))
    assert is_transient(ConnectionResetError(), app.retryable)
    assert not is_transient(ConnectionResetError())
    assert not is_transient(BadReturn("x"))

    def innermost() -> None:
        raise KeyError("order 7")

    try:
        innermost()
    except KeyError as exc:
        reason = failure_reason(exc, "triage")
    assert reason.startswith("handler of role 'triage' raised KeyError: 'order 7' at test_context.py:")
    assert reason.endswith(" in innermost")


def test_timeout_cancels_an_async_handler(client: redis.Redis, keys: Keys) -> None:
    task = Task(role="writer", task="x", run_id="run-6")

    async def slow(ctx: Context, task: str) -> str:
        await asyncio.sleep(60)
        return task

    with pytest.raises(TimeoutError):
        asyncio.run(run_handler(slow, Context(EchoGateway(), item(task), SPEC, services(client, keys)), "x",
                                timeout=0.05))


def test_chat_runs_the_tool_loop_and_replays_it_from_the_journal(client: redis.Redis, keys: Keys) -> None:
    from baton.agents.backends import load_backend
    from tests.app import sample_apps
    from tests.scripted_model import ScriptedModel, call, say

    with ScriptedModel([call("lookup", order=42), say("Status: {tool_results}")]) as model:
        gw = EchoGateway(chat_backend=load_backend(model.url()))
        task = Task(role="writer", task="where is 42?", run_id="run-7")
        svc = services(client, keys)

        async def handler(ctx: Context, task: str) -> str:
            reply = await ctx.chat([{"role": "system", "content": "Be brief."}, {"role": "user", "content": task}],
                                   tools=[sample_apps.lookup])
            return reply.text

        for deliveries in (1, 2):
            ctx = Context(gw, item(task, deliveries), SPEC, svc)
            out = asyncio.run(run_handler(handler, ctx, task.task))
            assert out == Next("Status: order 42: shipped")
        assert (model.chat_calls, gw.chats, gw.tools) == (2, 2, ["lookup"])  # the redelivery called nothing
        assert (ctx.calls.replayed, ctx.calls.made) == (3, 0)
        sent = model.requests[0]
        assert sent["tools"][0]["function"]["name"] == "lookup"
        assert sent["tools"][0]["function"]["parameters"]["properties"]["order"]["type"] == "integer"
