"""The OpenAI-compatible face (``/v1/chat/completions``, ``/v1/models``) driven by the official
``openai`` client against a real ``baton dashboard`` subprocess with API tokens, real Redis and
worker processes (echo, and the offline twin for streamed tokens)."""

from __future__ import annotations

import json
import threading

import httpx
import openai
import pytest
import redis

from baton.broker import Keys, get_run, run_metadata
from tests.conftest import Workers
from tests.ops.conftest import TOKENS, Server, wait_status


def _client(server: Server, token: str | None = TOKENS[0]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token or "none", max_retries=0, timeout=120)


def test_models_list_the_workflows_and_need_a_token(server: Server) -> None:
    ids = [m.id for m in _client(server).models.list()]
    assert ids[0] == "baton:seed" and {"baton:reviewed", "baton:research_fanout"} <= set(ids)
    assert _client(server).models.retrieve("baton:reviewed").id == "baton:reviewed"
    with pytest.raises(openai.NotFoundError):
        _client(server).models.retrieve("gpt-4o")
    for token in (None, "not-a-token"):
        with pytest.raises(openai.AuthenticationError):
            _client(server, token).models.list()
    with server.http(token=None) as anon:
        for method, path in [("GET", "/v1/models"), ("GET", "/v1/models/baton:seed"),
                             ("POST", "/v1/chat/completions")]:
            body = {"model": "baton:seed", "messages": [{"role": "user", "content": "x"}]}
            res = anon.request(method, path, json=body)
            assert res.status_code == 401, (method, path, res.text)


def test_models_include_the_workflows_apps_registered(server: Server, client: redis.Redis, keys: Keys) -> None:
    from baton.agents.workflow.registry import publish_workflow
    from tests.app import sample_apps

    assert "baton:sample" not in [m.id for m in _client(server).models.list()]
    publish_workflow(client, keys, sample_apps.app.workflow())  # as `baton worker --app` does
    assert "baton:sample" in [m.id for m in _client(server).models.list()]


def test_chat_completion_runs_the_workflow_on_the_last_user_message(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    echo_workers.spawn("--all-roles")
    api = _client(server)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What are streams?"},
                {"role": "assistant", "content": "Append-only logs."},
                {"role": "user", "content": [{"type": "text", "text": "Explain consumer groups."}]}]
    raw = api.chat.completions.with_raw_response.create(model="baton:seed", messages=messages)  # type: ignore[arg-type]
    answer = raw.parse()
    run_id = raw.headers["x-baton-run-id"]
    assert answer.id == f"chatcmpl-{run_id}" and answer.object == "chat.completion"
    record = get_run(client, keys, run_id)
    assert record is not None and record["status"] == "done" and record["task"] == "Explain consumer groups."
    assert answer.choices[0].message.content == record["result"] and answer.choices[0].finish_reason == "stop"
    assert answer.choices[0].message.role == "assistant"
    history = json.loads(run_metadata(record)["history"])
    assert history == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What are streams?"},
                       {"role": "assistant", "content": "Append-only logs."}]

    stream = api.chat.completions.create(model="baton:seed", stream=True,
                                         messages=[{"role": "user", "content": "Explain streams."}])
    chunks = list(stream)
    streamed_run = chunks[0].id.removeprefix("chatcmpl-")
    record = get_run(client, keys, streamed_run)
    assert record is not None and record["task"] == "Explain streams."
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    # The echo model's last role generates " [echo]" after its prompt: the log carries the generated part.
    assert text == " [echo]" and record["result"].endswith(text)
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"

    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="baton:nope", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.UnprocessableEntityError):
        api.chat.completions.create(model="baton:seed", messages=[{"role": "system", "content": "no user"}])


def test_a_cancelled_run_ends_the_stream_with_an_error(server: Server, client: redis.Redis, keys: Keys) -> None:
    # No worker serves "reviewed": the run waits in its queue until it is cancelled.
    stream = _client(server).chat.completions.create(model="baton:reviewed", stream=True,
                                                     messages=[{"role": "user", "content": "wait for me"}])
    first = next(iter(stream))
    run_id = first.id.removeprefix("chatcmpl-")
    assert first.choices[0].delta.role == "assistant"
    def cancel() -> None:
        with server.http() as http:
            http.post(f"/v1/runs/{run_id}/cancel").raise_for_status()

    canceller = threading.Timer(0.2, cancel)
    canceller.start()
    with pytest.raises(openai.APIError, match="was cancelled"):
        list(stream)
    canceller.join()
    with server.http() as http:
        assert wait_status(http, run_id, "cancelled")["status"] == "cancelled"


def test_twin_tokens_stream_as_they_are_generated(server: Server, client: redis.Redis, keys: Keys,
                                                  workers: Workers) -> None:
    workers.spawn("--all-roles")
    stream = _client(server).chat.completions.create(model="baton:seed", stream=True,
                                                     messages=[{"role": "user", "content": "Explain streams."}])
    chunks = list(stream)
    run_id = chunks[0].id.removeprefix("chatcmpl-")
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    record = get_run(client, keys, run_id)
    assert record is not None and record["status"] == "done"
    assert len(deltas) > 1, deltas  # tokens arrive in several chunks, not as one answer
    assert record["result"].endswith("".join(deltas))
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKENS[1]}"}) as http:
        events = [json.loads(line.removeprefix("data: ")) for line in http.get(f"/v1/runs/{run_id}/events").text
                  .splitlines() if line.startswith("data: ")]
    generated = "".join(e["text"] for e in events if e["type"] == "tokens" and e["role"] == "summarizer")
    assert generated == "".join(deltas)
