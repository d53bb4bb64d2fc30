"""Threads over HTTP: ``POST /v1/runs`` with ``thread``/``thread_policy``, ``/v1/threads`` (list, show,
delete) behind the bearer token, the CLI, and the dashboard's threads view in headless Chromium with
real workers."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
import redis
from fastapi.testclient import TestClient

from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys
from tests.cli import baton
from tests.conftest import Workers
from tests.ops.conftest import TOKENS, Server
from tests.ops.test_dashboard import CHROMIUM, dashboard_url, live_dashboard  # noqa: F401  (a fixture)


def test_thread_routes_submit_show_refuse_and_delete(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    with TestClient(create_app(Settings(redis_url=redis_url), SEED), base_url="http://localhost") as http:
        first = http.post("/v1/runs", json={"task": "hello", "thread": "t-api"})
        assert first.status_code == 201, first.text
        queued = http.post("/v1/runs", json={"task": "again", "thread": "t-api"}).json()["run_id"]
        busy = http.post("/v1/runs", json={"task": "no", "thread": "t-api", "thread_policy": "reject"})
        assert busy.status_code == 409 and first.json()["run_id"] in busy.json()["detail"]
        assert http.post("/v1/runs", json={"task": "x", "thread": "bad id"}).status_code == 422
        assert http.post("/v1/runs", json={"task": "x", "thread": "t", "thread_policy": "later"}).status_code == 422
        shown = http.get("/v1/threads/t-api").json()
        assert (shown["active"], shown["queued"], shown["turns"]) == (first.json()["run_id"], [queued], [])
        assert [t["thread_id"] for t in http.get("/v1/threads").json()["threads"]] == ["t-api"]
        assert http.get("/v1/threads/nope").status_code == 404
        assert http.delete("/v1/threads/t-api").json() == {"thread_id": "t-api", "deleted": True}
        assert http.delete("/v1/threads/t-api").status_code == 404
        assert http.get(f"/v1/runs/{queued}").json()["status"] == "cancelled"


def test_thread_routes_refuse_requests_without_a_token(server: Server) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as anon:
        assert anon.get("/v1/threads").status_code == 401
        assert anon.get("/v1/threads/t").status_code == 401
        assert anon.delete("/v1/threads/t").status_code == 401
        assert anon.post("/v1/runs", json={"task": "x", "thread": "t"}).status_code == 401
    with httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {TOKENS[0]}"}) as http:
        assert http.get("/v1/threads/never-made").status_code == 404


def test_cli_submits_turns_and_lists_shows_and_deletes_threads(redis_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {"REDIS_URL": redis_url}
    first = baton("submit", "--thread", "t-cli", "hello", env=env)
    assert first.returncode == 0, first.stderr
    refused = baton("submit", "--thread", "t-cli", "--policy", "reject", "again", env=env)
    assert refused.returncode == 1 and refused.stderr.startswith("baton: error: thread 't-cli' is running run")
    assert len(refused.stderr.splitlines()) == 1
    bad = baton("submit", "--policy", "reject", "alone", env=env)
    assert bad.returncode == 1 and bad.stderr == "baton: error: a thread policy needs a thread\n"
    listed = baton("threads", "list", env=env)
    assert listed.returncode == 0 and "t-cli" in listed.stdout
    shown = baton("threads", "show", "t-cli", "--json", env=env)
    assert shown.returncode == 0 and first.stdout.strip() in shown.stdout
    assert baton("threads", "delete", "t-cli", env=env).stdout.strip() == "thread t-cli deleted"
    gone = baton("threads", "show", "t-cli", env=env)
    assert gone.returncode == 1 and gone.stderr == ("baton: error: no thread 't-cli' (it never existed or it "
                                                    "expired)\n")


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_shows_a_threads_turns(client: redis.Redis, workers: Workers,
                                                     dashboard_url: str,  # noqa: F811
                                                     tmp_path: Path) -> None:
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env={"BATON_MODEL": "echo"})
    workers.wait_ready(client, 3, timeout=120)
    with live_dashboard(dashboard_url) as page:
        for text in ("What is a thread?", "And a turn?"):
            page.fill("#task-input", text)
            page.fill("#thread-input", "ui-chat")
            page.click("#submit-btn")
            page.wait_for_selector("#run-status.done", timeout=120_000)
        page.wait_for_selector("#threads tr[data-thread-id='ui-chat']", timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('#thread-turns .turn').length === 2",
                               timeout=60_000)
        turns = page.eval_on_selector_all("#thread-turns .turn b", "els => els.map(e => e.textContent)")
        assert turns == ["What is a thread?", "And a turn?"]
        row = page.text_content("#threads tr[data-thread-id='ui-chat']") or ""
        assert row.startswith("ui-chat2idle0")
