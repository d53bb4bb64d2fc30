"""The ``baton`` command as a user runs it: a subprocess, its stdout, stderr and exit code."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import redis

from baton.broker import Keys
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import SEED_TASK, notebook
from tests.waiting import wait_for


def seed_stdout(memories: dict[str, list[dict[str, str]]]) -> str:
    """What the notebook's sections 4 and 5 print for these memories."""
    lines = []
    titles = {"Alice": "Planner", "Bob": "Researcher", "Eve": "Summarizer"}
    for agent, title in titles.items():
        lines.append(f"{title} output:\n{memories[agent][0]['response']}\n\n")
    for agent, title in titles.items():
        lines.append(f"{title} Scratchpad:\n {json.dumps(memories[agent], indent=2)} \n\n")
    return "".join(lines)


def test_baton_run_with_embedded_redis_prints_the_notebook(worker_env: dict[str, str], twin: Path) -> None:
    env = {k: v for k, v in worker_env.items() if k != "REDIS_URL"}
    proc = baton("run", SEED_TASK, env=env)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == seed_stdout(notebook(twin))


def test_submit_wait_result_scratchpad_streams(
    client: redis.Redis, keys: Keys, workers: Workers, worker_env: dict[str, str], twin: Path
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    proc = baton("submit", SEED_TASK, "--wait", env=worker_env)
    assert proc.returncode == 0, proc.stderr + workers.logs()
    run_id, result = proc.stdout.split("\n", 1)
    expected = notebook(twin)
    assert result == expected["Eve"][0]["response"] + "\n"
    got = baton("result", run_id, env=worker_env)
    assert got.returncode == 0 and got.stdout == result
    pad = baton("scratchpad", "researcher", "--run", run_id, env=worker_env)
    assert pad.stdout == f"Bob Scratchpad:\n {json.dumps(expected['Bob'], indent=2)} \n\n"
    pads = json.loads(baton("scratchpad", "--json", env=worker_env).stdout)
    assert pads["run_id"] == run_id and list(pads["scratchpads"]) == ["Alice", "Bob", "Eve"]
    rows = json.loads(baton("streams", "--json", env=worker_env).stdout)
    roles = {r["role"]: r for r in rows}
    assert set(roles) == {"planner", "researcher", "summarizer"}
    assert all(r["groups"][0]["pending"] == 0 and len(r["groups"][0]["consumers"]) == 1 for r in rows)
    schema = json.loads(baton("schema", env=worker_env).stdout)
    assert "Task" in schema["$defs"]

    # the docs' "start a run from any language" example, typed as a raw XADD
    line = next(x for x in (ROOT / "docs" / "PROTOCOL.md").read_text().splitlines() if x.startswith("redis-cli XADD"))
    stream, _, field, payload = shlex.split(line)[2:]
    client.xadd(stream, {field: payload})
    got = wait_for(lambda: (r := baton("result", "run-from-cli", env=worker_env)).returncode == 0 and r, 60,
                   "the result of the run started with redis-cli", logs=workers.logs, interval=0.2)
    assert got.stdout == result


@pytest.mark.parametrize(
    ("args", "env_update", "message"),
    [
        (["run", ""], {}, "the task is empty"),
        (["run", "   "], {}, "the task is empty"),
        (["submit", "hi"], {"REDIS_URL": "redis://127.0.0.1:1/0"}, "cannot reach Redis at redis://127.0.0.1:1/0"),
        (["submit", "hi"], {"REDIS_URL": "redis://:secret@127.0.0.1:1/0"}, "redis://:***@127.0.0.1:1/0"),
        (["submit", "hi"], {"REDIS_URL": "nonsense://x"}, "invalid REDIS_URL"),
        (["worker", "nobody"], {}, "unknown role 'nobody'"),
        (["submit", "hi", "--workflow", "/nonexistent.toml"], {}, "cannot read workflow file"),
        (["result", "no-such-run"], {}, "no run 'no-such-run'"),
        (["nonsense"], {}, "No such command"),
        (["submit", "hi"], {"BATON_BATCH_SIZE": "lots"}, "bad value for BATON_BATCH_SIZE"),
    ],
)
def test_cli_errors_are_one_line_and_non_zero(
    args: list[str], env_update: dict[str, str], message: str, worker_env: dict[str, str]
) -> None:
    proc = baton(*args, env={**worker_env, **env_update}, timeout=60)
    assert proc.returncode != 0
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "Traceback" not in proc.stderr
