"""MCP tool servers as baton tools, against a real MCP server process (stdio and Streamable HTTP)."""

from __future__ import annotations

import asyncio
import os
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest

from baton.agents.backends.http import HTTPBackend
from baton.agents.tools import ToolError, get_tool
from baton.agents.tools.loop import local_tools, run_tool_loop
from baton.agents.tools.mcp import MCPConnection, MCPError, close_all, connect
from baton.agents.tools.runner import ToolRunner
from baton.agents.workflow import MCPServerSpec, WorkflowError, loads
from baton.broker import Keys, free_port
from baton.protocol.chat import ChatMessage, ChatRequest, ChatResult
from tests.scripted_model import ScriptedModel, call, calls, say


@pytest.fixture(autouse=True)
def _closed() -> Any:
    yield
    close_all()


def spec(settings: dict[str, object] | str) -> MCPServerSpec:
    return MCPServerSpec(url=settings) if isinstance(settings, str) else msgspec.convert(settings, MCPServerSpec)


def pids(calls_file: Path) -> set[int]:
    return {int(line.split()[1]) for line in calls_file.read_text().splitlines()}


@pytest.mark.parametrize("transport", ["stdio", "http"])
def test_tools_of_a_server_are_baton_tools(transport: str, request: pytest.FixtureRequest, mcp_calls: Path) -> None:
    conn = connect("shop", spec(request.getfixturevalue(f"mcp_{transport}")))
    assert sorted(t.name for t in conn.tools) == ["shop.add", "shop.lookup_order"]
    add = get_tool("shop.add")
    definition = add.definition()  # type: ignore[attr-defined]
    assert definition.function.name == "shop__add" and definition.function.description == "Add two integers."
    assert definition.function.parameters["required"] == ["a", "b"]
    results: list[str] = []
    threads = [threading.Thread(target=lambda i=i: results.append(add.run({"a": i, "b": 1}, None)))  # type: ignore[arg-type]
               for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["1", "2", "3", "4"]
    lookup = get_tool("shop.lookup_order")
    assert asyncio.run(lookup.arun({"order": 42})) == "order 42: shipped"  # type: ignore[attr-defined]
    with pytest.raises(ToolError, match="no order 9"):
        asyncio.run(lookup.arun({"order": 9}))  # type: ignore[attr-defined]
    assert len(mcp_calls.read_text().splitlines()) == 6 and len(pids(mcp_calls)) == 1  # one long-lived session


def test_a_stdio_server_stops_when_the_connection_closes(mcp_stdio: dict[str, object], mcp_calls: Path) -> None:
    conn = MCPConnection("shop", spec(mcp_stdio))
    conn.list_tools()
    assert conn.call("add", {"a": 1, "b": 2}) == "3"
    (pid,) = pids(mcp_calls)
    conn.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    with pytest.raises(MCPError, match="closed"):
        conn.call("add", {"a": 1, "b": 2})


def test_an_unreachable_server_is_one_clear_error() -> None:
    with pytest.raises(MCPError, match=r"MCP server 'gone' .* is unreachable: \S+") as err:
        connect("gone", MCPServerSpec(url=f"http://127.0.0.1:{free_port()}/mcp", timeout=5))
    assert "\n" not in str(err.value)
    with pytest.raises(MCPError, match="unreachable"):
        connect("nothere", MCPServerSpec(command="/nonexistent/mcp-server", timeout=5))


def test_the_loop_runs_mcp_and_python_tools_from_scripted_calls(
        scripted_model: Callable[..., ScriptedModel], mcp_http: str, mcp_calls: Path) -> None:
    conn = connect("shop", spec(mcp_http))
    server = scripted_model([calls(call("shop__lookup_order", order=7), call("shop.add", a=2, b=2)),
                             call("shop.lookup_order", order=1), say("{tool_results}")])
    backend = HTTPBackend(server.url())

    async def chat(req: ChatRequest) -> ChatResult:
        return (await asyncio.to_thread(backend.chat, [req]))[0]

    request = ChatRequest(messages=[ChatMessage(role="user", content="status?")],
                          tools=[t.definition() for t in conn.tools])
    result = asyncio.run(run_tool_loop(request, chat=chat, run_tool=local_tools(conn.tools),
                                       allowed={"shop.lookup_order", "shop.add"}))
    backend.close()
    assert result.text == "order 7: lost in transit; 4; error: Error executing tool lookup_order: no order 1"
    assert [t["function"]["name"] for t in server.requests[0]["tools"]] == ["shop__add", "shop__lookup_order"]
    assert len(mcp_calls.read_text().splitlines()) == 3


WORKFLOW = """
name = "mcp-demo"
entry = "clerk"

[mcp.shop]
command = {command!r}
args = {args!r}
env = {{ MCP_TEST_CALLS = {calls!r} }}

[[roles]]
role = "clerk"
agent = "Carl"
tools = ["shop.add", "calculator"]
"""


def test_a_workflow_file_names_mcp_servers_and_roles_call_their_tools(mcp_stdio: dict[str, Any],
                                                                     mcp_calls: Path) -> None:
    wf = loads(WORKFLOW.format(command=mcp_stdio["command"], args=mcp_stdio["args"], calls=str(mcp_calls)))
    assert wf.mcp["shop"].command == mcp_stdio["command"] and wf.mcp["shop"].timeout == 30.0
    runner = ToolRunner(None, Keys(), wf, wf.role("clerk"))
    try:
        assert runner.call("shop.add", {"a": "20", "b": "22"}, "run1").output == "42"
        refused = runner.call("shop.lookup_order", {"order": "42"}, "run1")
        assert refused.where == "refused" and "not allowed" in refused.error
    finally:
        runner.close()
    assert mcp_calls.read_text().splitlines()[0].startswith("add ")


@pytest.mark.parametrize("table, reason", [
    ('[mcp.shop]\ncommand = "x"\nurl = "http://h/mcp"', "either command"),
    ("[mcp.shop]\n", "either command"),
    ('[mcp.shop]\nurl = "ftp://h"', "must start with http"),
    ('[mcp."a.b"]\nurl = "http://h/mcp"', "may not contain '.'"),
    ('[mcp.shop]\nurl = "http://h/mcp"\nport = 3', "unknown field"),
])
def test_bad_mcp_tables_are_one_line_errors(table: str, reason: str) -> None:
    text = f'name = "w"\nentry = "r"\n{table}\n[[roles]]\nrole = "r"\nagent = "A"\n'
    with pytest.raises(WorkflowError, match=reason) as err:
        loads(text)
    assert "\n" not in str(err.value)


def test_the_readme_mcp_example_is_a_valid_workflow() -> None:
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    (snippet,) = re.findall(r"```toml\n(\[mcp\.shop\].*?)```", readme, re.S)
    wf = loads('name = "desk"\nentry = "clerk"\n' + snippet)
    assert wf.mcp["shop"].args == ["-m", "examples.orders_mcp"] and wf.role("clerk").tools == ["shop.lookup_order"]


def test_a_broken_session_is_opened_again_on_the_next_call(mcp_calls: Path) -> None:
    from tests.mcp_server import start_http

    port = free_port()
    with start_http(mcp_calls, port=port) as url:
        conn = connect("shop", MCPServerSpec(url=url, timeout=5))
        assert get_tool("shop.add").run({"a": 1, "b": 1}, None) == "2"  # type: ignore[arg-type]
    with pytest.raises(ToolError):  # the server is gone: a clear tool error, not a hang
        conn.call("add", {"a": 1, "b": 2})
    with start_http(mcp_calls, port=port):
        assert conn.call("add", {"a": 2, "b": 2}) == "4"
    assert len(pids(mcp_calls)) == 2
