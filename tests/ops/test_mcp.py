"""Workflows as MCP tools and runs as resources, driven by the official ``mcp`` SDK client over
both transports: Streamable HTTP at ``/mcp`` on a real ``baton dashboard`` subprocess with API
tokens, and stdio with ``baton mcp`` as a subprocess; real Redis, echo workers in their own processes."""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import httpx2
import mcp_types as types
import pytest
import redis
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from baton.broker import Keys, get_run
from tests.conftest import ROOT, Workers
from tests.ops.conftest import TOKENS, Server, dashboard_env
from tests.waiting import wait_for


@asynccontextmanager
async def _http_session(server: Server, token: str = TOKENS[0]) -> AsyncIterator[ClientSession]:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=120)
    async with http, streamable_http_client(f"{server.url}/mcp", http_client=http) as (read, write, *_), \
            ClientSession(read, write) as session:
        await session.initialize()
        yield session


@asynccontextmanager
async def _stdio_session(redis_url: str) -> AsyncIterator[ClientSession]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "baton", "mcp"], cwd=ROOT,
                                   env=dashboard_env(redis_url))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        yield session


async def _call_and_read(session: ClientSession, client: redis.Redis, keys: Keys) -> None:
    """The checks both transports pass: tools, a call with progress, a task, resources."""
    tools = {t.name: t for t in (await session.list_tools()).tools}
    assert list(tools)[0] == "seed" and {"reviewed", "research_fanout"} <= set(tools)
    assert tools["seed"].input_schema["required"] == ["task"]
    assert tools["seed"].execution is not None and tools["seed"].execution.task_support == "optional"

    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    result = await session.call_tool("seed", {"task": "Explain MCP."}, progress_callback=on_progress)
    assert not result.is_error and result.structured_content is not None
    run_id = result.structured_content["run_id"]
    record = get_run(client, keys, run_id)
    assert record is not None and record["status"] == "done" and record["task"] == "Explain MCP."
    assert result.content[0].text == record["result"] == result.structured_content["result"]  # type: ignore[union-attr]
    assert [m for _, _, m in progress if m and "finished" in m] == [
        "planner (Alice) finished hop 0", "researcher (Bob) finished hop 1", "summarizer (Eve) finished hop 2"]
    assert max(p for p, _, _ in progress) == 3 and {t for _, t, _ in progress} == {3}  # hops finished of 3

    # Every run is a task: tasks/get, tasks/result and tasks/list read its record.
    status = await session.send_request(types.GetTaskRequest(params=types.GetTaskRequestParams(task_id=run_id)),
                                        types.GetTaskResult)
    assert status.status == "completed" and status.task_id == run_id
    payload = await session.send_request(types.GetTaskPayloadRequest(
        params=types.GetTaskPayloadRequestParams(task_id=run_id)), types.CallToolResult)
    assert payload.structured_content == result.structured_content
    listed = await session.send_request(types.ListTasksRequest(), types.ListTasksResult)
    assert run_id in [t.task_id for t in listed.tasks]

    # Runs are resources.
    templates = (await session.list_resource_templates()).resource_templates
    assert [t.uri_template for t in templates] == ["baton://runs/{run_id}"]
    uris = [str(r.uri) for r in (await session.list_resources()).resources]
    assert f"baton://runs/{run_id}" in uris
    read = await session.read_resource(f"baton://runs/{run_id}")
    doc = json.loads(read.contents[0].text)  # type: ignore[union-attr]
    assert doc["run_id"] == run_id and doc["status"] == "done" and doc["result"] == record_result(client, keys, run_id)
    with pytest.raises(MCPError, match="no run"):
        await session.read_resource("baton://runs/nope")


async def _create_task(server: Server, tool: str, task: str) -> types.CreateTaskResult:
    """A task-augmented ``tools/call`` (protocol 2025-11-25) over the wire, read with the SDK's types.

    The SDK's own session validates every ``tools/call`` answer as a ``CallToolResult`` and has no
    task support, so this one request is sent as JSON-RPC by hand."""
    call = types.CallToolRequest(params=types.CallToolRequestParams(
        name=tool, arguments={"task": task}, task=types.TaskMetadata(ttl=60_000)))
    body = {"jsonrpc": "2.0", "id": 1, **call.model_dump(by_alias=True, mode="json", exclude_none=True)}
    headers = {"Authorization": f"Bearer {TOKENS[0]}", "Accept": "application/json, text/event-stream",
               "MCP-Protocol-Version": "2025-11-25"}
    async with httpx.AsyncClient(timeout=60) as http:
        res = await http.post(f"{server.url}/mcp", json=body, headers=headers)
    assert res.status_code == 200, res.text
    lines = [ln.removeprefix("data:").strip() for ln in res.text.splitlines() if ln.startswith("data:")]
    reply = json.loads(lines[-1] if lines else res.text)
    return types.CreateTaskResult.model_validate(reply["result"], by_name=False)


def record_result(client: redis.Redis, keys: Keys, run_id: str) -> str:
    rec = get_run(client, keys, run_id)
    assert rec is not None
    return rec["result"]


def _run(scenario: Callable[[], Awaitable[Any]]) -> None:
    asyncio.run(scenario())  # type: ignore[arg-type]


def test_mcp_over_streamable_http_on_the_dashboard(server: Server, client: redis.Redis, keys: Keys,
                                                   echo_workers: Workers) -> None:
    echo_workers.spawn("--all-roles")

    async def scenario() -> None:
        async with _http_session(server) as session:
            await _call_and_read(session, client, keys)
            # A task-augmented call answers at once with the run's id; tasks/result waits for the run.
            created = await _create_task(server, "seed", "Explain tasks.")
            # The echo workers may finish the run before the answer is built: either state is honest.
            assert created.task.status in ("working", "completed") and created.task.poll_interval
            payload = await session.send_request(types.GetTaskPayloadRequest(
                params=types.GetTaskPayloadRequestParams(task_id=created.task.task_id)), types.CallToolResult)
            record = get_run(client, keys, created.task.task_id)
            assert record is not None and record["status"] == "done" and record["task"] == "Explain tasks."
            assert payload.content[0].text == record["result"]  # type: ignore[union-attr]
            assert payload.meta == {"io.modelcontextprotocol/related-task": {"taskId": created.task.task_id}}
            # A task cancelled while it waits (no worker serves research_fanout), and a failed call.
            created = await _create_task(server, "research_fanout", "wait")
            assert created.task.status == "working"  # nothing serves it: the answer did not wait for the run
            cancel = types.CancelTaskRequest(params=types.CancelTaskRequestParams(task_id=created.task.task_id))
            assert (await session.send_request(cancel, types.CancelTaskResult)).status == "cancelled"
            with pytest.raises(MCPError, match="already ended"):
                await session.send_request(cancel, types.CancelTaskResult)
            failed = await session.call_tool("nope", {"task": "x"})
            assert failed.is_error and "no workflow 'nope'" in failed.content[0].text  # type: ignore[union-attr]

    _run(scenario)


def test_mcp_endpoint_needs_a_token(server: Server) -> None:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    with httpx.Client(base_url=server.url, timeout=10) as anon:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            res = anon.post("/mcp", json=body, headers={**headers, "Accept": "application/json, text/event-stream"})
            assert res.status_code == 401 and res.headers["www-authenticate"] == "Bearer", res.text
            assert anon.get("/mcp", headers=headers).status_code == 401

    async def refused() -> None:
        async with _http_session(server, token="wrong"):
            pass

    with pytest.raises(BaseException) as caught:
        _run(refused)
    assert "Server returned an error response" in _messages(caught.value)  # the 401 above, as the client sees it


def _messages(exc: BaseException) -> str:
    """The messages of ``exc`` and of every exception it groups (the client raises in a task group)."""
    inner = exc.exceptions if isinstance(exc, BaseExceptionGroup) else ()
    return " | ".join([str(exc), *(_messages(e) for e in inner)])


def test_mcp_over_stdio(redis_url: str, client: redis.Redis, keys: Keys, echo_workers: Workers) -> None:
    echo_workers.spawn("--all-roles")
    wait_for(lambda: echo_workers.procs[0].poll() is None, 5, "the worker")

    async def scenario() -> None:
        async with _stdio_session(redis_url) as session:
            await _call_and_read(session, client, keys)

    _run(scenario)
