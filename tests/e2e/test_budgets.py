"""Per-run budgets end to end: worker processes (echo and the twin), runs submitted through the
CLI and the client, failures with the one-line reason, accounting on the record, ``baton runs``."""

from __future__ import annotations

import json
from pathlib import Path

import redis

from baton import Budget, Client
from baton.broker import Keys, get_run, scratchpad
from baton.broker.dlq import list_dead
from baton.protocol import Error, decode
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs

ROLES = ("planner", "researcher", "summarizer")
AGENTS = {"planner": "Alice", "researcher": "Bob", "summarizer": "Eve"}
FANOUT = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")

BUDGETED = """name = "budgeted"
entry = "planner"
[budget]
max_model_calls = 2
[[roles]]
role = "planner"
agent = "Alice"
next = "researcher"
[[roles]]
role = "researcher"
agent = "Bob"
next = "summarizer"
[[roles]]
role = "summarizer"
agent = "Eve"
"""


def _nothing_after(client: redis.Redis, keys: Keys, workflow: str, run_id: str, failed_role: str) -> None:
    """The refused hop wrote no handoff: no scratchpad entry of its agent, no task for the roles after it."""
    later = ROLES[ROLES.index(failed_role) + 1:]
    assert scratchpad(client, keys, run_id, AGENTS[failed_role]) == []
    for role in later:
        assert client.xlen(keys.stream(workflow, role)) == 0, role


def test_model_calls_budget_from_workflow_and_cli(client: redis.Redis, keys: Keys, workers: Workers,
                                                 worker_env: dict[str, str], tmp_path: Path) -> None:
    wf = tmp_path / "budgeted.toml"
    wf.write_text(BUDGETED)
    workers.env["BATON_MODEL"] = "echo"
    for role in ROLES:
        workers.spawn(role, "--workflow", str(wf))
    workers.wait_ready(client)
    env = {**worker_env, "BATON_MODEL": "echo"}
    over = baton("submit", "--workflow", str(wf), "--wait", "--timeout", "60", "A task", env=env)
    assert over.returncode == 1
    run_id = over.stdout.strip()
    assert over.stderr == f"baton: error: run {run_id} failed: budget exceeded: 3 of 2 model calls\n"
    rec = get_run(client, keys, run_id) or {}
    assert (rec["status"], rec["error"], rec["role"], rec["model_calls"]) == (
        "failed", "budget exceeded: 3 of 2 model calls", "summarizer", "2")
    _nothing_after(client, keys, "budgeted", run_id, "summarizer")
    assert client.xlen(keys.results()) == 1  # the failure, not a result
    dead = [d.letter for d in list_dead(client, keys) if d.letter.run_id == run_id]
    assert [(d.role, d.reason) for d in dead] == [("summarizer", "budget exceeded: 3 of 2 model calls")]

    within = baton("submit", "--workflow", str(wf), "--max-model-calls", "3", "--wait", "--timeout", "60", "Task",
                   env=env)  # the submit-time limit wins over the workflow's
    assert within.returncode == 0, within.stderr
    done_id = within.stdout.splitlines()[0]
    rec = get_run(client, keys, done_id) or {}
    assert (rec["status"], rec["max_model_calls"], rec["model_calls"]) == ("done", "3", "3")
    assert [rec[f"model_calls:{r}"] for r in ROLES] == ["1", "1", "1"]
    assert rec["tokens"] == "0" and rec["tokens@echo"] == "0"  # echo generates no tokens

    listed = baton("runs", env={**env, "BATON_MODEL_PRICES": "echo=0.5"})
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[0].split() == ["RUN", "STATUS", "WORKFLOW", "HOPS", "TOKENS", "CALLS", "TOOLS", "DURATION", "COST",
                                "ERROR"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows[done_id][1:7] == ["done", "budgeted", "3", "0", "3/3", "0"] and rows[done_id][8] == "$0.000000"
    assert rows[run_id][1:7] == ["failed", "budgeted", "2", "0", "2/2", "0"]
    assert " ".join(rows[run_id][9:]) == "budget exceeded: 3 of 2 model calls"


def test_tokens_budget_with_the_twin_and_accounting(client: redis.Redis, keys: Keys, workers: Workers,
                                                   worker_env: dict[str, str], twin: Path) -> None:
    workers.env["BATON_MAX_NEW_TOKENS"] = "12"
    for role in ROLES:
        workers.spawn(role)
    workers.wait_ready(client)
    with Client(worker_env["REDIS_URL"]) as c:
        ok = c.submit("Explain supervised learning.", budget=Budget(max_tokens=1000, max_model_calls=3))
        ok.wait(timeout=120)
        capped = c.submit("Explain supervised learning.", budget=Budget(max_tokens=13))
        recs = wait_runs(client, keys, [capped.id], timeout=120)
        infos = {i.run_id: i for i in c.runs()}
    rec = recs[capped.id]
    used = int(rec["tokens"])
    assert used >= 2, rec  # the twin wrote more than one token in the first hop
    assert (rec["status"], rec["error"], rec["role"]) == ("failed", f"budget exceeded: {used + 12} of 13 tokens",
                                                          "researcher")
    _nothing_after(client, keys, "default", capped.id, "researcher")

    info = infos[ok.id]
    pads = {role: scratchpad(client, keys, ok.id, AGENTS[role]) for role in ROLES}
    per_role = {role: sum(e.meta.tokens for e in pads[role]) for role in ROLES}
    assert info.status == "done" and info.hops == 3
    assert info.usage.tokens_by_role == per_role and info.tokens == sum(per_role.values()) > 0
    assert info.usage.model_calls_by_role == {r: 1 for r in ROLES} and info.model_calls == 3
    assert info.usage.tokens_by_model == {str(twin): info.tokens}
    assert info.usage.budget == Budget(max_tokens=1000, max_model_calls=3)
    assert infos[capped.id].usage.exceeded == rec["error"]

    env = {**worker_env, "BATON_MODEL_PRICES": f"{twin}=2.5, other=1"}
    listed = baton("runs", "--json", "--limit", "5", env=env)
    assert listed.returncode == 0, listed.stderr
    rows = {r["run_id"]: r for r in json.loads(listed.stdout)}
    assert rows[ok.id]["tokens"] == info.tokens and rows[ok.id]["tokens_by_role"] == per_role
    assert rows[ok.id]["cost"] == info.tokens * 2.5 / 1000
    assert rows[capped.id]["status"] == "failed" and rows[capped.id]["budget"] == {"max_tokens": 13}


def test_tool_calls_budget_in_a_fanout(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.env["BATON_MODEL"] = "echo"
    for role in ROLES:
        workers.spawn(role, "--workflow", FANOUT)
    workers.wait_ready(client)
    with Client(workers.env["REDIS_URL"]) as c:
        run = c.submit("Topic", workflow=FANOUT, budget=Budget(max_tool_calls=2))
    rec = wait_runs(client, keys, [run.id], timeout=120)[run.id]
    assert (rec["status"], rec["error"], rec["role"]) == ("failed", "budget exceeded: 3 of 2 tool calls", "researcher")
    assert (rec["tool_calls"], rec["tool_calls:researcher"]) == ("2", "2")
    bob = scratchpad(client, keys, run.id, "Bob")
    assert len(bob) < 3, (rec, workers.logs())  # the refused part wrote nothing (nor did parts of its batch)
    assert all(e.meta.tools[0].tool == "kb_search" for e in bob)
    assert int(rec.get("model_calls:researcher", 0)) == len(bob)  # refused parts made no model call
    assert scratchpad(client, keys, run.id, "Eve") == []  # the summarizer never ran
    published = [decode(fields[b"msg"]) for _, fields in client.xrange(keys.results())]
    assert published and all(isinstance(m, Error) for m in published)  # failures only, no result


def test_bad_budget_values_are_one_line_errors(worker_env: dict[str, str]) -> None:
    for args, message in [
        (["--max-tokens", "0"], "baton: error: bad value for --max-tokens: Expected `int` >= 1\n"),
        (["--max-tool-calls", "-3"], "baton: error: bad value for --max-tool-calls: Expected `int` >= 1\n"),
    ]:
        proc = baton("submit", *args, "A task", env=worker_env)
        assert (proc.returncode, proc.stderr) == (2, message)
    proc = baton("submit", "--max-model-calls", "many", "A task", env=worker_env)
    assert proc.returncode == 2 and len(proc.stderr.splitlines()) == 1 and "--max-model-calls" in proc.stderr
    proc = baton("runs", env={**worker_env, "BATON_MODEL_PRICES": "echo=cheap"})
    assert (proc.returncode, proc.stderr) == (1, "baton: error: bad value for BATON_MODEL_PRICES: 'echo=cheap' is "
                                                 "not MODEL=PRICE (a price per 1,000 tokens >= 0, e.g. echo=0.002)\n")
