"""Workflows as A2A agents, driven by the official ``a2a-sdk`` client against a real ``baton
dashboard`` subprocess with API tokens, real Redis and echo workers in their own processes: send,
stream, get, cancel, resubscribe after a dropped connection, and a review answered over A2A."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine
from typing import Any, TypeVar

import httpx
import pytest
import redis
from a2a.client import Client, ClientConfig, create_client
from a2a.types import (
    CancelTaskRequest,
    GetTaskRequest,
    Message,
    Part,
    Role,
    SendMessageConfiguration,
    SendMessageRequest,
    StreamResponse,
    SubscribeToTaskRequest,
    TaskState,
    TaskStatus,
)

from baton.broker import Keys, get_run
from tests.conftest import Workers
from tests.ops.conftest import TOKENS, Server
from tests.waiting import wait_for

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


async def _client(server: Server, workflow: str, *, streaming: bool = True,
                  token: str = TOKENS[0]) -> tuple[Client, httpx.AsyncClient]:
    http = httpx.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    client = await create_client(f"{server.url}/a2a/{workflow}", ClientConfig(httpx_client=http, streaming=streaming))
    return client, http


def _ask(text: str, *, task_id: str = "", immediately: bool = False) -> SendMessageRequest:
    msg = Message(message_id=f"m-{abs(hash(text))}", role=Role.ROLE_USER, parts=[Part(text=text)], task_id=task_id)
    return SendMessageRequest(message=msg, configuration=SendMessageConfiguration(return_immediately=immediately))


async def _collect(stream: AsyncIterator[StreamResponse]) -> list[StreamResponse]:
    return [event async for event in stream]


def _states(events: list[StreamResponse]) -> list[int]:
    return [e.status_update.status.state for e in events if e.HasField("status_update")]


def _last_status(events: list[StreamResponse]) -> TaskStatus:
    """The task's status after ``events`` (the stream's first event is the task as it stood)."""
    final = [e for e in events if e.HasField("task") or e.HasField("status_update")][-1]
    return final.task.status if final.HasField("task") else final.status_update.status


def _artifacts(events: list[StreamResponse]) -> list[tuple[str, str, bool, bool]]:
    return [(e.artifact_update.artifact.artifact_id, e.artifact_update.artifact.parts[0].text,
             e.artifact_update.append, e.artifact_update.last_chunk) for e in events if e.HasField("artifact_update")]


def test_agent_cards_declare_the_bearer_scheme_and_every_route_needs_a_token(server: Server) -> None:
    with server.http() as http, server.http(token=None) as anon:
        card = http.get("/a2a/reviewed/.well-known/agent-card.json").json()
        assert card["name"] == "baton:reviewed" and card["capabilities"]["streaming"] is True
        [iface] = card["supportedInterfaces"]
        assert iface == {"url": f"{server.url}/a2a/reviewed", "protocolBinding": "JSONRPC", "protocolVersion": "1.0"}
        assert card["securitySchemes"] == {"bearer": {"httpAuthSecurityScheme": {
            "scheme": "bearer", "description": "One of the deployment's BATON_API_TOKENS, as for /v1."}}}
        assert card["securityRequirements"] == [{"schemes": {"bearer": {}}}]
        assert http.get("/.well-known/agent-card.json").json()["name"] == "baton:seed"
        assert http.get("/a2a/nope/.well-known/agent-card.json").status_code == 404
        for method, path in [("GET", "/.well-known/agent-card.json"), ("GET", "/a2a/seed/.well-known/agent-card.json"),
                             ("POST", "/a2a/seed")]:
            res = anon.request(method, path, json={"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {}})
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", (method, path)
            assert http.request(method, path, headers={"Authorization": "Bearer wrong"}).status_code == 401

    async def refused() -> None:
        await _client(server, "seed", token="wrong")

    with pytest.raises(Exception, match="401"):
        run(refused())


def test_send_stream_get_and_cancel(server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers) -> None:
    echo_workers.spawn("--all-roles", env={"BATON_ECHO_DELAY_S": "0.3"})  # hops long enough to watch

    async def scenario() -> None:
        plain, http = await _client(server, "seed", streaming=False)
        [sent] = await _collect(plain.send_message(_ask("Explain streams.")))
        task = sent.task
        record = get_run(client, keys, task.id)
        assert record is not None and record["status"] == "done" and record["task"] == "Explain streams."
        assert task.status.state == TaskState.TASK_STATE_COMPLETED
        assert {a.artifact_id: a.parts[0].text for a in task.artifacts}["result"] == record["result"]
        assert [a.artifact_id for a in task.artifacts] == ["hop-0-planner", "hop-1-researcher", "hop-2-summarizer",
                                                           "result"]
        got = await plain.get_task(GetTaskRequest(id=task.id))
        assert got.status.state == TaskState.TASK_STATE_COMPLETED and got.history[0].parts[0].text == "Explain streams."
        assert got.history[-1].parts[0].text == record["result"] and got.history[-1].role == Role.ROLE_AGENT

        streaming, _ = await _client(server, "seed")
        events = await _collect(streaming.send_message(_ask("Explain consumer groups.")))
        assert events[0].HasField("task")
        assert events[0].task.status.state in (TaskState.TASK_STATE_SUBMITTED, TaskState.TASK_STATE_WORKING)
        run_id = events[0].task.id
        record = get_run(client, keys, run_id)
        assert record is not None and record["status"] == "done"
        states = _states(events)
        assert states[-1] == TaskState.TASK_STATE_COMPLETED and TaskState.TASK_STATE_WORKING in states
        artifacts = _artifacts(events)
        tokens = [a for a in artifacts if a[0] == "hop-2-summarizer" and not a[3]]
        assert tokens == [("hop-2-summarizer", " [echo]", False, False)]  # the echo model's one token chunk
        assert artifacts[-1] == ("result", record["result"], False, True)

        # No worker serves research_fanout: its task waits in the queue until cancelled.
        other, _ = await _client(server, "research_fanout", streaming=False)
        [queued] = await _collect(other.send_message(_ask("wait", immediately=True)))
        assert queued.task.status.state == TaskState.TASK_STATE_SUBMITTED
        cancelled = await other.cancel_task(CancelTaskRequest(id=queued.task.id))
        assert cancelled.status.state == TaskState.TASK_STATE_CANCELED
        assert get_run(client, keys, queued.task.id)["status"] == "cancelled"  # type: ignore[index]
        with pytest.raises(Exception, match="already ended"):
            await other.cancel_task(CancelTaskRequest(id=queued.task.id))
        with pytest.raises(Exception, match="no task"):
            await other.get_task(GetTaskRequest(id=run_id))  # a task of another agent (workflow)
        await http.aclose()

    run(scenario())


def test_resubscribe_after_a_dropped_connection_resumes_from_the_log(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    echo_workers.spawn("--all-roles", env={"BATON_ECHO_DELAY_S": "1"})

    async def scenario() -> None:
        a2a, http = await _client(server, "seed")
        stream = a2a.send_message(_ask("Explain resubscription."))
        first = await anext(stream)
        await stream.aclose()  # the connection drops
        run_id = first.task.id
        wait_for(lambda: int((get_run(client, keys, run_id) or {}).get("hops", 0)) >= 1, 60, "the first hop")
        events = await _collect(a2a.subscribe(SubscribeToTaskRequest(id=run_id)))
        snapshot = events[0].task
        assert snapshot.id == run_id and "hop-0-planner" in [a.artifact_id for a in snapshot.artifacts]
        later = {a[0] for a in _artifacts(events[1:])}
        assert "hop-0-planner" not in later and {"hop-2-summarizer", "result"} <= later
        assert _states(events)[-1] == TaskState.TASK_STATE_COMPLETED
        record = get_run(client, keys, run_id)
        assert record is not None and _artifacts(events)[-1] == ("result", record["result"], False, True)
        with pytest.raises(Exception, match="has ended"):
            await _collect(a2a.subscribe(SubscribeToTaskRequest(id=run_id)))
        await http.aclose()

    run(scenario())


def test_a_review_is_input_required_and_a_message_on_the_task_decides_it(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    echo_workers.spawn("--all-roles", "--workflow", "reviewed")

    async def scenario() -> None:
        a2a, http = await _client(server, "reviewed")
        events = await _collect(a2a.send_message(_ask("Plan a talk on streams.")))
        run_id = events[0].task.id
        waiting = _last_status(events)
        assert waiting.state == TaskState.TASK_STATE_INPUT_REQUIRED
        assert "approve" in waiting.message.parts[0].text and waiting.message.parts[0].text.count("Planner") >= 1
        assert get_run(client, keys, run_id)["status"] == "review"  # type: ignore[index]
        got = await a2a.get_task(GetTaskRequest(id=run_id))
        assert got.status.state == TaskState.TASK_STATE_INPUT_REQUIRED

        with pytest.raises(Exception, match="waits for a review"):
            await _collect(a2a.send_message(_ask("maybe later", task_id=run_id)))
        decided = await _collect(a2a.send_message(_ask("approve: EDITED PLAN: define, then compare.", task_id=run_id)))
        assert _last_status(decided).state == TaskState.TASK_STATE_COMPLETED
        record = get_run(client, keys, run_id)
        assert record is not None and "EDITED PLAN: define, then compare." in record["result"]
        with pytest.raises(Exception, match="is completed"):
            await _collect(a2a.send_message(_ask("approve", task_id=run_id)))

        second = await _collect(a2a.send_message(_ask("Plan another talk.")))
        rejected = await _collect(a2a.send_message(_ask("reject: off topic", task_id=second[0].task.id)))
        state = _last_status(rejected)
        assert state.state == TaskState.TASK_STATE_FAILED and "off topic" in state.message.parts[0].text
        await http.aclose()

    run(scenario())
