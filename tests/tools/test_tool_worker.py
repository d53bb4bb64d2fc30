"""A tool worker pool in separate processes (``baton worker --tools ...``) against a real Redis."""

from __future__ import annotations

import subprocess
import sys

import redis

from baton.agents.tools import ToolRunner
from baton.agents.workflow.spec import RoleSpec, ToolConfig, Workflow
from baton.broker import Keys, live_workers
from baton.protocol import DeadLetter, decode
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for


def _remote_runner(client: redis.Redis, timeout: float = 20.0) -> ToolRunner:
    spec = RoleSpec(role="r", agent="Rae", tools=["calculator", "kb_search"])
    tools = {"calculator": ToolConfig(remote=True, timeout=timeout), "kb_search": ToolConfig(remote=True, timeout=0.5)}
    return ToolRunner(client, Keys(), Workflow(name="t", entry="r", roles=[spec], tools=tools), spec)


def _processed(client: redis.Redis) -> dict[str, int]:
    return {b.consumer: b.processed for b in live_workers(client, Keys()) if b.role == "tools"}


def test_a_pool_of_two_tool_workers_answers_each_call_once(
    client: redis.Redis, keys: Keys, workers: Workers, worker_env: dict[str, str]
) -> None:
    workers.spawn("--tools", "calculator", "clock")
    workers.spawn("--tools", "calculator,clock")
    workers.wait_ready(client, 2)
    check = subprocess.run([sys.executable, "-m", "baton", "worker", "--tools", "calculator", "--check"],
                           env=worker_env, cwd=ROOT, capture_output=True, timeout=60)
    assert check.returncode == 0, check.stderr
    runner = _remote_runner(client)
    outs = [runner.call("calculator", {"expression": f"{i} * {i}"}, f"run-{i % 3}") for i in range(12)]
    assert [o.output for o in outs] == [str(i * i) for i in range(12)], [o.error for o in outs]
    assert all(o.where == "remote" and o.error == "" for o in outs)
    # a tool error comes back as a result; the pool keeps serving
    err = runner.call("calculator", {"expression": "1/0"}, "run-0")
    assert err.error == "division by zero" and err.output == ""
    # a bad entry on a tool stream is dead-lettered; the pool keeps serving
    client.xadd(keys.tool_stream("calculator"), {"msg": b"{not json"})
    assert runner.call("calculator", {"expression": "2+2"}, "run-0").output == "4"
    stream = keys.tool_stream("calculator")
    # a call is answered, then acked: the last ack may land just after its caller has the answer
    wait_for(lambda: [(g["pending"], g["entries-read"]) for g in client.xinfo_groups(stream)] == [(0, 15)], 10,
             "every call entry read once and acked", logs=lambda: f"{client.xinfo_groups(stream)}\n{workers.logs()}")
    wait_for(lambda: sum(_processed(client).values()) >= 14, 30,  # heartbeats report what each worker answered
             "heartbeats counting 14 answers", logs=lambda: f"{_processed(client)}\n{workers.logs()}")
    assert len(_processed(client)) == 2 and all(n > 0 for n in _processed(client).values()), _processed(client)
    (_, fields), = client.xrange(keys.dead())
    dl = decode(fields[b"msg"])
    assert isinstance(dl, DeadLetter) and dl.role == "tools" and "malformed JSON" in dl.reason
    assert not list(client.scan_iter(match="baton:*toolreply*"))  # replies are taken, not left behind
    runner.close()


def test_a_tool_worker_recreates_its_deleted_group_and_still_answers(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn("--tools", "calculator")
    workers.wait_ready(client, 1)
    runner = _remote_runner(client)
    assert runner.call("calculator", {"expression": "6 * 7"}, "run-a").output == "42"
    stream = keys.tool_stream("calculator")
    assert client.xgroup_destroy(stream, "tools") == 1  # the worker's next read meets NOGROUP
    out = runner.call("calculator", {"expression": "7 * 8"}, "run-b")
    assert out.output == "56" and out.where == "remote", (out.error, workers.logs())
    assert proc.poll() is None, workers.logs()
    assert workers.logged("consumer group 'tools' is missing"), workers.logs()
    (group,) = client.xinfo_groups(stream)
    assert group["name"] == b"tools"
    runner.close()


def test_a_remote_call_times_out_when_no_tool_worker_answers(client: redis.Redis) -> None:
    out = _remote_runner(client).call("kb_search", {"query": "x"}, "run-t")
    assert out.error == "tool 'kb_search' timed out after 0.5s (no tool worker answered)"


def test_unknown_tool_names_are_a_one_line_error(worker_env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "baton", "worker", "--tools", "calculator", "rm_rf"],
                          env=worker_env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert proc.stderr.startswith("baton: error: unknown tool(s) rm_rf; known: ") and proc.stderr.count("\n") == 1
