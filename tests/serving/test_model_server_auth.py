"""``baton serve-model`` API keys: the official ``openai`` client with the right, a wrong and no key,
replicas that all require the keys, role workers sending ``OPENAI_API_KEY``, and the refusal to
listen beyond loopback without keys; against real server and worker processes on the echo model."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import redis

from baton.agents.backends import ECHO_SUFFIX
from baton.broker import Keys, free_port, submit
from baton.protocol import Task
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import SEED_TASK, wait_runs
from tests.serving.process import serve_model
from tests.waiting import wait_for

ENV_KEY = "env-key-0123456789"
CLI_KEY = "cli-key-9876543210"
REPLICAS = 2


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``baton serve-model`` on the echo model in REPLICAS processes, one key from
    ``BATON_MODEL_API_KEYS`` and one from ``--api-key``; yields the base URL."""
    log = tmp_path_factory.mktemp("serve-auth") / "serve.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env["BATON_MODEL_API_KEYS"] = f" {ENV_KEY}, ,"
    with serve_model(["--model", "echo", "--replicas", str(REPLICAS), "--api-key", CLI_KEY], log, env=env) as url:
        yield url


def _oai(server: str, key: str | None) -> openai.OpenAI:
    """The client with ``key``; with None, one that sends no bearer token at all."""
    if key is None:
        return openai.OpenAI(base_url=server, api_key="unset", max_retries=0, default_headers={"Authorization": ""})
    return openai.OpenAI(base_url=server, api_key=key, max_retries=0)


@pytest.mark.parametrize("key", [ENV_KEY, CLI_KEY])
def test_openai_client_with_a_key_completes_streamed_and_not(server: str, key: str) -> None:
    oai = _oai(server, key)
    full = oai.completions.create(model="echo", prompt=["a", "b"], max_tokens=4)
    assert [c.text for c in full.choices] == [ECHO_SUFFIX, ECHO_SUFFIX]
    streamed = "".join(c.choices[0].text for c in oai.completions.create(model="echo", prompt="a", max_tokens=4,
                                                                         stream=True) if c.choices)
    assert streamed == ECHO_SUFFIX
    chat = oai.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}], max_tokens=4)
    assert chat.choices[0].message.content == "hi" + ECHO_SUFFIX  # echo chat: the last user message, echoed
    assert [m.id for m in oai.models.list()] == ["echo"]


@pytest.mark.parametrize("key", ["wrong-key", ENV_KEY[:-1], f"{ENV_KEY},{CLI_KEY}", None])
def test_openai_client_without_a_valid_key_is_refused(server: str, key: str | None) -> None:
    oai = _oai(server, key)
    with pytest.raises(openai.AuthenticationError) as refused:
        oai.completions.create(model="echo", prompt="a", max_tokens=4)
    assert refused.value.status_code == 401 and refused.value.code == "invalid_api_key"
    assert ("didn't provide an API key" in refused.value.message) == (key is None)
    with pytest.raises(openai.AuthenticationError):
        oai.completions.create(model="echo", prompt="a", max_tokens=4, stream=True)
    with pytest.raises(openai.AuthenticationError):
        oai.chat.completions.create(model="echo", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.AuthenticationError):
        oai.models.list()


def test_every_replica_requires_a_key_and_health_stays_open(server: str) -> None:
    base = server.removesuffix("/v1")
    for i in range(3 * REPLICAS):
        with httpx.Client(base_url=base) as http:  # a new connection, to either replica
            assert http.get("/health").status_code == 200
            # no key, even with a body the route would reject, is refused before the body is read
            refused = http.post("/v1/completions", json={"max_tokens": -1})
            assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
            assert refused.json()["error"] == {"message": refused.json()["error"]["message"],
                                               "type": "invalid_request_error", "param": None,
                                               "code": "invalid_api_key"}
            wrong = http.post("/v1/completions", json={"prompt": "p"}, headers={"Authorization": "Basic " + CLI_KEY})
            assert wrong.status_code == 401
            ok = http.post("/v1/completions", json={"prompt": f"p{i}"}, headers={"Authorization": f"bearer {CLI_KEY}"})
            assert ok.status_code == 200 and ok.json()["choices"][0]["text"] == ECHO_SUFFIX


def test_workers_with_the_key_finish_runs_and_without_it_fail_them(
    server: str, client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    model = {"BATON_MODEL": f"{server}?model=echo"}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env={**model, "OPENAI_API_KEY": ENV_KEY})
    workers.wait_ready(client)
    ids = [submit(client, keys, Task(run_id=f"keyed-{i}", role="planner", task=SEED_TASK)) for i in range(3)]
    assert {r["status"] for r in wait_runs(client, keys, ids, timeout=120).values()} == {"done"}
    workers.stop_all()
    workers.spawn("planner", env={**model, "OPENAI_API_KEY": "wrong-key"})
    workers.wait_ready(client, count=1)
    refused = submit(client, keys, Task(run_id="unkeyed", role="planner", task=SEED_TASK))
    record = wait_runs(client, keys, [refused], timeout=120)[refused]
    assert record["status"] == "failed" and "HTTP 401: Incorrect API key" in record.get("error", ""), record


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.1"])
def test_serve_model_refuses_to_listen_beyond_loopback_without_keys(host: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    result = baton("serve-model", "--model", "echo", "--host", host, "--port", str(free_port()), env=env, timeout=60)
    assert result.returncode == 2, result
    assert result.stdout == "" and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "without authentication" in result.stderr and "Traceback" not in result.stderr


def test_allow_anonymous_listens_beyond_loopback_without_keys(tmp_path: Path) -> None:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    with open(tmp_path / "serve.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "serve-model", "--model", "echo", "--host", "0.0.0.0",
                                 "--port", str(port), "--allow-anonymous"],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the anonymous server", interval=0.2)
        answer = _oai(f"http://127.0.0.1:{port}/v1", None).completions.create(model="echo", prompt="a", max_tokens=2)
        assert answer.choices[0].text == ECHO_SUFFIX
    finally:
        proc.terminate()
        proc.wait(30)
