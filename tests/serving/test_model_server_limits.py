"""``baton serve-model`` checks the API key before it reads a body, caps bodies and prompt lists, and runs a
long prompt list in batches of at most ``--max-batch``: a real server process on the echo model."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from baton.agents.serving.limits import MAX_BODY_BYTES, MAX_PROMPTS
from tests.serving.process import serve_model

KEY = "limits-key-5551234"
MAX_BATCH = 8


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}


@pytest.fixture(scope="module")
def keyed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("limits-keyed") / "serve.log"
    with serve_model(["--model", "echo", "--replicas", "1", "--api-key", KEY, "--max-batch", str(MAX_BATCH)], log,
                     env=_env()) as url:
        yield url


@pytest.fixture(scope="module")
def open_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    log = tmp_path_factory.mktemp("limits-open") / "serve.log"
    with serve_model(["--model", "echo", "--replicas", "1", "--max-batch", str(MAX_BATCH)], log, env=_env()) as url:
        yield url


def _half_sent(base: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """POST /v1/completions declaring a 30 MB body and sending 10 bytes of it: the status the server
    answers without waiting for the rest (a server that reads first times out here)."""
    host, port = base.removeprefix("http://").split("/")[0].split(":")
    with socket.create_connection((host, int(port)), timeout=20) as sock:
        head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
        sock.sendall(f"POST /v1/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                     f"Content-Length: 30000000\r\n{head}\r\n".encode() + b'{"prompt":')
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
    status = int(reply.split(b" ", 2)[1])
    return status, reply


def test_the_key_is_checked_before_the_body_is_read(keyed: str) -> None:
    status, reply = _half_sent(keyed, {})
    assert status == 401 and b"www-authenticate: bearer" in reply.lower()
    status, _ = _half_sent(keyed, {"Authorization": "Bearer wrong-key"})
    assert status == 401
    malformed = httpx.post(f"{keyed}/completions", content=b"{not json", headers={"Content-Type": "application/json"})
    assert malformed.status_code == 401 and malformed.json()["error"]["code"] == "invalid_api_key"
    big = httpx.post(f"{keyed}/completions", headers={"Authorization": f"Bearer {KEY}"}, timeout=60,
                     json={"prompt": "x" * (MAX_BODY_BYTES + 1), "max_tokens": 1})
    assert big.status_code == 413 and "over" in big.json()["error"]["message"]
    ok = httpx.post(f"{keyed}/completions", headers={"Authorization": f"Bearer {KEY}"},
                    json={"prompt": "hello", "max_tokens": 2})
    assert ok.status_code == 200, ok.text


def test_without_keys_bodies_and_prompt_lists_are_capped(open_server: str) -> None:
    status, _ = _half_sent(open_server, {})
    assert status == 413
    chunked = httpx.post(f"{open_server}/completions", headers={"Content-Type": "application/json"}, timeout=60,
                         content=iter([b'{"prompt": "', b"x" * (MAX_BODY_BYTES + 1), b'"}']))  # no Content-Length
    assert chunked.status_code == 413
    many = httpx.post(f"{open_server}/completions", json={"prompt": ["p"] * (MAX_PROMPTS + 1), "max_tokens": 1})
    assert many.status_code == 422 and "prompt" in json.dumps(many.json())


def test_a_long_prompt_list_runs_in_batches_of_at_most_max_batch(open_server: str, tmp_path: Path) -> None:
    prompts = [f"prompt {i}" for i in range(3 * MAX_BATCH + 1)]
    got = httpx.post(f"{open_server}/completions", json={"prompt": prompts, "max_tokens": 2}, timeout=120)
    assert got.status_code == 200, got.text
    choices = got.json()["choices"]
    assert [c["index"] for c in choices] == list(range(len(prompts)))
    assert all(c["text"] for c in choices)
    health = httpx.get(open_server.removesuffix("/v1") + "/health").json()
    assert health["largest_batch"] <= MAX_BATCH and health["batches"] >= 4
