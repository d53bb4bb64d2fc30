"""Every submit path (the Python client, the HTTP API, ``baton submit``) starts the same run: the
same first task, built by one function, against a real Redis and no workers."""

from __future__ import annotations

import os

import pytest
import redis
from fastapi.testclient import TestClient

from baton import Client
from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow import SEED, WorkflowError, named, packaged
from baton.broker import Keys
from baton.protocol import Task, decode
from tests.cli import baton


def _shape(task: Task) -> tuple[object, ...]:
    return (task.role, task.workflow, task.task, task.max_hops, task.priority, task.hop, task.deadline is not None)


@pytest.mark.parametrize("path", ["client", "api", "cli"])
def test_every_submit_path_sets_the_same_first_task(path: str, redis_url: str, client: redis.Redis,
                                                    keys: Keys) -> None:
    settings = Settings(redis_url=redis_url, max_hops=7)
    text = "Explain the importance of supervised learning."
    if path == "client":
        with Client(settings=settings) as c:
            run_id = c.submit(text, workflow="research_fanout", deadline=600, priority="batch").id
    elif path == "api":
        with TestClient(create_app(settings, SEED), base_url="http://localhost") as http:
            created = http.post("/v1/runs", json={"task": text, "workflow": "research_fanout", "deadline": 600,
                                                  "priority": "batch"})
            assert created.status_code == 201, created.text
            run_id = created.json()["run_id"]
    else:
        env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
        env.update({"REDIS_URL": redis_url, "BATON_MAX_HOPS": "7"})
        done = baton("submit", "--workflow", "research_fanout", "--deadline", "600", "--priority", "batch", text,
                     env=env)
        assert done.returncode == 0, done.stderr
        run_id = done.stdout.strip()
    wf = named("research_fanout")
    entries = client.xrange(keys.run_stream(wf.name, wf.entry, run_id, "batch"))
    task = decode(entries[0][1][b"msg"])
    assert isinstance(task, Task) and task.run_id == run_id
    assert _shape(task) == (wf.entry, "research_fanout", text, 7, "batch", 0, True)
    assert client.hget(keys.run(run_id), "priority") == b"batch"


def test_one_workflow_lookup_by_name() -> None:
    assert named(None) is SEED and named("") is SEED and named("seed") is SEED
    shipped = packaged()
    assert named("research_fanout").name == "research_fanout"
    assert named(str(shipped["research_fanout"])).name == "research_fanout"
    assert named("reviewed", files=False).name == "reviewed"
    with pytest.raises(WorkflowError, match="unknown workflow 'nosuch'"):
        named("nosuch", files=False)
    with pytest.raises(WorkflowError, match="unknown workflow"):  # a path never reads a file over the network
        named(str(shipped["research_fanout"]), files=False)
