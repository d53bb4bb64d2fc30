"""The OpenAI-compatible HTTP backend against a real ``baton serve-model`` process on the twin."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from baton.agents.backends import ModelRejected, ModelUnavailable, load_backend
from baton.agents.backends.http import HTTPBackend
from baton.agents.runtime.failures import classify
from baton.broker import Keys, free_port, scratchpad, submit
from baton.protocol import Task
from tests.conftest import Workers
from tests.e2e.helpers import SEED_TASK, notebook, wait_runs
from tests.serving.process import serve_model

PROMPTS = ["Planner agent named Alice. Task: Explain the importance of supervised learning.\nMemory: []\nResponse:",
           "Hello world", ""]


@pytest.fixture(scope="module")
def server(twin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``baton serve-model`` on the twin, on a free port; yields its base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_model(["--model", str(twin), "--name", "tiny-twin"], log, timeout=120) as url:
        yield url


def test_completions_and_chat_match_the_local_model(server: str, twin_backend: Any) -> None:
    local = twin_backend.generate(PROMPTS, max_new_tokens=12)
    remote = load_backend(server)
    assert isinstance(remote, HTTPBackend) and remote.model == "tiny-twin"
    assert remote.generate(PROMPTS, max_new_tokens=12) == local
    chat = load_backend(f"{server}?api=chat&model=tiny-twin")
    assert [g.text for g in chat.generate(PROMPTS[:2], max_new_tokens=12)] == [g.text for g in local[:2]]
    raw = httpx.post(f"{server}/completions", json={"prompt": PROMPTS[:2], "max_tokens": 5}).json()
    assert [c["index"] for c in raw["choices"]] == [0, 1] and raw["usage"]["completion_tokens"] == 10


def test_refusals_and_outages_raise_their_failure_class(server: str) -> None:
    with pytest.raises(ModelRejected, match="HTTP 422") as rejected:
        load_backend(server).generate(["x"], max_new_tokens=100_000)
    assert "max_tokens" in rejected.value.reason and classify(rejected.value) == "permanent"
    with pytest.raises(ModelUnavailable, match="connection refused") as down:
        load_backend(f"http://127.0.0.1:{free_port()}/v1?model=m").generate(["x"])
    assert classify(down.value) == "transient"


def test_seed_workers_share_one_model_server(
    server: str, client: redis.Redis, keys: Keys, workers: Workers, twin: Path
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env={"BATON_MODEL": server})
    run_id = submit(client, keys, Task(run_id="run-http", role="planner", task=SEED_TASK))
    rec = wait_runs(client, keys, [run_id], timeout=120)[run_id]
    assert rec["status"] == "done", workers.logs()
    expected = notebook(twin)
    for agent in ("Alice", "Bob", "Eve"):
        got = [{"task": e.task, "response": e.response} for e in scratchpad(client, keys, run_id, agent)]
        assert got == expected[agent]
