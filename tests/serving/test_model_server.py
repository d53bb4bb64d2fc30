"""``baton serve-model``: dynamic batching, the official ``openai`` client (streamed and not), and
role workers on an HTTP model that never import torch; against real server and worker processes."""

from __future__ import annotations

import functools
import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import redis

from baton.agents.backends import ECHO_SUFFIX
from baton.agents.backends.http import HTTPBackend
from baton.agents.serving.batcher import Batcher
from baton.broker import Keys, free_port, live_workers, submit
from baton.protocol import Task
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import SEED_TASK, wait_runs
from tests.serving.process import serve_model
from tests.waiting import wait_for

MAX_BATCH = 6
PROMPTS = ["Planner agent named Alice. Task: Explain supervised learning.\nResponse:", "Hello world", "",
           "The quick brown fox", "Ünïcode – ✓ 漢字", "1 2 3 4 5 6 7 8 9"]
MODULES_AT_EXIT = (
    "import atexit, json, sys\n"
    "atexit.register(lambda: print('MODULES ' + json.dumps(sorted(m for m in ('torch', 'transformers', 'tokenizers')"
    " if m in sys.modules)), flush=True))\n"
    "from baton.agents.cli import main\n"
    "sys.argv[0] = 'baton'\n"
    "raise SystemExit(main())\n"
)


@pytest.fixture(scope="module")
def server(twin: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``baton serve-model`` on the twin batching up to MAX_BATCH prompts with a long wait, so
    MAX_BATCH concurrent requests always share one generate call; yields the base URL."""
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with serve_model(["--model", str(twin), "--name", "twin", "--max-batch", str(MAX_BATCH),
                      "--batch-wait-ms", "1000"], log, timeout=120) as url:
        yield url


@pytest.fixture
def oai(server: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server, api_key="unused", max_retries=0)


def _health(server: str) -> dict[str, Any]:
    return dict(httpx.get(server.removesuffix("/v1") + "/health").json())


def _collect(chunks: dict[int, list[str]], request: int, _index: int, text: str) -> None:
    chunks.setdefault(request, []).append(text)


def test_batcher_gives_each_request_what_it_gets_alone(twin_backend: Any) -> None:
    alone = [twin_backend.generate([p], max_new_tokens=10)[0] for p in PROMPTS]
    batcher = Batcher(twin_backend, max_batch=len(PROMPTS), wait_ms=60_000)
    try:
        chunks: dict[int, list[str]] = {}
        futures = [batcher.submit([p], 10, functools.partial(_collect, chunks, i)) for i, p in enumerate(PROMPTS)]
        together = [f.result(timeout=120)[0] for f in futures]
        assert (batcher.batches, batcher.largest) == (1, len(PROMPTS))
        assert together == alone
        assert {i: "".join(c) for i, c in chunks.items()} == {
            i: g.text[len(p):] for i, (p, g) in enumerate(zip(PROMPTS, alone, strict=True)) if g.text != p}
        assert batcher.submit(PROMPTS, 4).result(timeout=60) == twin_backend.generate(PROMPTS, max_new_tokens=4)
    finally:
        batcher.close()


def test_concurrent_requests_share_a_batch_and_answer_as_one_by_one(oai: openai.OpenAI, server: str) -> None:
    def complete(prompt: str) -> str:
        return oai.completions.create(model="twin", prompt=prompt, max_tokens=12).choices[0].text

    before = _health(server)["batches"]
    with ThreadPoolExecutor(MAX_BATCH) as pool:
        together = list(pool.map(complete, PROMPTS))
    after = _health(server)
    assert after["largest_batch"] == MAX_BATCH and after["batches"] - before == 1
    assert together == [complete(p) for p in PROMPTS]


def test_openai_client_completions_streamed_and_not(oai: openai.OpenAI, twin_backend: Any) -> None:
    local = twin_backend.generate(PROMPTS, max_new_tokens=12)
    full = oai.completions.create(model="twin", prompt=PROMPTS, max_tokens=12)
    assert [c.text for c in full.choices] == [g.text[len(p):] for p, g in zip(PROMPTS, local, strict=True)]
    assert full.usage is not None and full.usage.completion_tokens == sum(g.new_tokens for g in local)
    texts: dict[int, str] = {}
    finished: dict[int, str | None] = {}
    usage = None
    chunks = 0
    for chunk in oai.completions.create(model="twin", prompt=PROMPTS, max_tokens=12, stream=True,
                                        stream_options={"include_usage": True}):
        usage = chunk.usage or usage
        for c in chunk.choices:
            assert c.index not in finished, "text after the choice's last chunk"
            texts[c.index] = texts.get(c.index, "") + c.text
            chunks += 1
            if c.finish_reason is not None:
                finished[c.index] = c.finish_reason
    assert [texts[i] for i in range(len(PROMPTS))] == [c.text for c in full.choices]
    assert finished == {c.index: c.finish_reason for c in full.choices} and set(finished.values()) <= {"length", "stop"}
    assert chunks > 2 * len(PROMPTS)  # token by token, not one chunk per choice
    assert usage is not None and usage.completion_tokens == full.usage.completion_tokens


def test_openai_client_chat_streamed_and_not(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Explain AI."}]
    full = oai.chat.completions.create(model="twin", messages=messages, max_tokens=10)
    text = full.choices[0].message.content
    assert text and full.choices[0].finish_reason in {"length", "stop"}
    stream = oai.chat.completions.create(model="twin", messages=messages, max_tokens=10, stream=True)
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == text
    assert [c.choices[0].finish_reason for c in chunks][-1] == full.choices[0].finish_reason and len(chunks) > 3


def test_chat_takes_tools_and_stop_and_a_text_model_answers_in_text(oai: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": PROMPTS[0]}]
    tools: Any = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    plain = oai.chat.completions.create(model="twin", messages=messages, max_tokens=12).choices[0].message.content
    assert plain and len(plain) > 4
    offered = oai.chat.completions.create(model="twin", messages=messages, max_tokens=12, tools=tools,
                                          tool_choice="auto", response_format={"type": "text"}).choices[0]
    assert offered.message.content == plain and offered.message.tool_calls is None  # the twin cannot call tools
    stop = plain[2:4]
    cut = oai.chat.completions.create(model="twin", messages=messages, max_tokens=12, stop=[stop]).choices[0]
    assert cut.message.content == plain[: plain.index(stop)] and cut.finish_reason == "stop"
    streamed = oai.chat.completions.create(model="twin", messages=messages, max_tokens=12, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed if c.choices) == cut.message.content
    completion = oai.completions.create(model="twin", prompt=PROMPTS[0], max_tokens=12, stop=[stop]).choices[0]
    assert completion.text == cut.message.content
    after_tool: Any = messages + [
        {"role": "assistant", "content": None,
         "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "42"}]
    assert oai.chat.completions.create(model="twin", messages=after_tool, max_tokens=4).choices[0].message.content


def test_stream_errors_are_http_errors_and_the_raw_stream_ends_with_done(oai: openai.OpenAI, server: str) -> None:
    with pytest.raises(openai.BadRequestError, match="leaves no room"):
        oai.completions.create(model="twin", prompt="x", max_tokens=2000, stream=True)
    with httpx.stream("POST", f"{server}/completions", json={"prompt": "Hi", "max_tokens": 3, "stream": True}) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [line for line in r.iter_lines() if line]
    assert lines[-1] == "data: [DONE]" and all(line.startswith("data: ") for line in lines)
    assert json.loads(lines[-2][6:])["choices"][0]["finish_reason"] == "length"


def test_http_backend_sends_a_batch_as_one_list_request(server: str, twin_backend: Any) -> None:
    local = twin_backend.generate(PROMPTS[:4], max_new_tokens=8)
    listed = HTTPBackend(f"{server}?model=twin")
    before = _health(server)["batches"]
    assert listed.generate(PROMPTS[:4], max_new_tokens=8) == local
    assert _health(server)["batches"] - before == 1 and listed.batch == "auto"
    each = HTTPBackend(f"{server}?model=twin&batch=each")
    assert each.generate(PROMPTS[:4], max_new_tokens=8) == local
    with pytest.raises(ValueError, match="batch must be one of"):
        HTTPBackend(f"{server}?batch=some")


def _worker(role: str, env: dict[str, str], out: Path) -> subprocess.Popen[bytes]:
    """``baton worker ROLE`` run by a script that prints which heavy modules were loaded when it exits."""
    with open(out, "wb") as log:
        return subprocess.Popen([sys.executable, "-c", MODULES_AT_EXIT, "worker", role], env=env, stdout=log,
                                stderr=subprocess.STDOUT, cwd=ROOT)


def _modules_at_exit(proc: subprocess.Popen[bytes], out: Path) -> list[str]:
    proc.send_signal(signal.SIGTERM)
    proc.wait(60)
    text = out.read_text()
    lines = [x for x in text.splitlines() if x.startswith("MODULES ")]
    assert len(lines) == 1, text
    return list(json.loads(lines[0].removeprefix("MODULES ")))


def test_http_worker_never_imports_torch(
    server: str, client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    env = {**workers.env, "BATON_MODEL": f"{server}?model=twin"}
    procs = {role: _worker(role, env, tmp_path / f"{role}.out") for role in ("planner", "researcher", "summarizer")}
    try:
        ids = [submit(client, keys, Task(run_id=f"light-{i}", role="planner", task=SEED_TASK)) for i in range(3)]
        records = wait_runs(client, keys, ids, timeout=120)
        assert {r["status"] for r in records.values()} == {"done"}
    finally:
        loaded = {role: _modules_at_exit(p, tmp_path / f"{role}.out") for role, p in procs.items()}
    assert loaded == {"planner": [], "researcher": [], "summarizer": []}
    # the same check on a worker with the model in-process does see torch
    local = _worker("planner", workers.env, tmp_path / "local.out")
    wait_for(lambda: any(w.pid == local.pid for w in live_workers(client, keys)), 120,
             "the in-process worker", logs=(tmp_path / "local.out").read_text)
    assert {"torch", "transformers"} <= set(_modules_at_exit(local, tmp_path / "local.out"))


def test_replicas_serve_on_one_port(tmp_path: Path) -> None:
    import psutil

    port = free_port()
    with open(tmp_path / "serve.log", "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "serve-model", "--model", "echo", "--port", str(port),
                                 "--replicas", "2"], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "serve.log").read_text()
            try:
                return httpx.get(f"{base}/health", timeout=2).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(up, 60, "the replicas", interval=0.2)
        replicas = [c for c in psutil.Process(proc.pid).children() if "spawn_main" in " ".join(c.cmdline())]
        assert len(replicas) == 2
        for i in range(6):
            with httpx.Client(base_url=base) as http:  # a new connection each time
                answer = http.post("/v1/completions", json={"prompt": [f"p{i}", "q"], "max_tokens": 3}).json()
            assert [c["text"] for c in answer["choices"]] == [ECHO_SUFFIX, ECHO_SUFFIX]
    finally:
        proc.terminate()
        proc.wait(30)


@pytest.mark.parametrize(("cores", "replicas"), [({0}, 1), ({0, 1}, 1), ({0, 1, 2}, 1), (set(range(8)), 4)])
def test_replicas_of_a_model_of_unknown_size_default_to_half_the_usable_cores(
        monkeypatch: pytest.MonkeyPatch, cores: set[int], replicas: int) -> None:
    import os

    from baton.agents.serving.server import default_replicas

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    assert default_replicas() == replicas
    assert default_replicas("some-org/not-a-local-directory") == replicas


@pytest.mark.parametrize(("cores", "available_gib", "replicas"),
                         [({0}, 64, 1), ({0, 1}, 64, 2), (set(range(8)), 64, 8), (set(range(8)), 5, 3),
                          (set(range(8)), 1, 1)])
def test_replicas_of_a_local_model_are_one_per_core_as_memory_allows(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cores: set[int], available_gib: int, replicas: int) -> None:
    import os

    from baton.agents.serving import server

    with open(tmp_path / "model.safetensors", "wb") as weights:
        weights.truncate(2**30)  # a 1 GiB model (a sparse file): 1.5 GiB a replica
    (tmp_path / "config.json").write_text("{}")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: cores)
    monkeypatch.setattr(server, "_available_bytes", lambda: available_gib * 2**30)
    assert server.default_replicas(str(tmp_path)) == replicas
