"""A workflow file's ``[mcp.NAME]`` server used by a template role in separate worker processes."""

from __future__ import annotations

from pathlib import Path

import redis

from baton.broker import Keys, get_run, scratchpad, submit
from baton.protocol import Task
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.mcp_server import stdio_spec

WORKFLOW = """
name = "mcp-desk"
entry = "clerk"

[mcp.shop]
command = {command!r}
args = {args!r}
env = {{ MCP_TEST_CALLS = {calls!r} }}

[mcp.remote]
url = {url!r}

[[roles]]
role = "clerk"
agent = "Carl"
prompt = "Order status: {{tools}}"
tools = ["shop.lookup_order", "remote.add"]
steps = [{{ tool = "shop.lookup_order", args = {{ order = "{{task}}" }} }},
         {{ tool = "remote.add", args = {{ a = "{{task}}", b = "1" }} }}]
"""


def test_template_roles_call_mcp_tools_over_both_transports(client: redis.Redis, keys: Keys, workers: Workers,
                                                            tmp_path: Path, mcp_calls: Path, mcp_http: str) -> None:
    spec = stdio_spec(mcp_calls)
    path = tmp_path / "desk.toml"
    path.write_text(WORKFLOW.format(command=spec["command"], args=spec["args"], calls=str(mcp_calls), url=mcp_http))
    workers.spawn("clerk", "--workflow", str(path), env={"BATON_MODEL": "echo"})
    workers.spawn("clerk", "--workflow", str(path), env={"BATON_MODEL": "echo"})
    workers.wait_ready(client, 2)
    run_ids = [submit(client, keys, Task(run_id=f"desk-{o}", role="clerk", task=str(o), workflow="mcp-desk"))
               for o in (42, 7, 9)]
    recs = wait_runs(client, keys, run_ids, timeout=120)
    assert all(r["status"] == "done" for r in recs.values()), (recs, workers.logs())
    results = {r: get_run(client, keys, r)["result"] for r in run_ids}  # type: ignore[index]
    assert results["desk-42"].startswith("Order status: [shop.lookup_order] order 42: shipped\n[remote.add] 43")
    assert "[shop.lookup_order] error: Error executing tool lookup_order: no order 9" in results["desk-9"]
    (entry,) = scratchpad(client, keys, "desk-7", "Carl")
    assert [t.tool for t in entry.meta.tools] == ["shop.lookup_order", "remote.add"]
    lines = mcp_calls.read_text().splitlines()
    assert len(lines) == 6
    assert len({line.split()[1] for line in lines}) <= 3  # one session per worker, and the HTTP server
