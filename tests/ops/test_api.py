"""The HTTP API (``/v1``) and its bearer tokens, driven with httpx and curl against a real
``baton dashboard`` subprocess, real Redis and echo workers in their own processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from baton.agents.cli.dashboard import is_loopback
from baton.agents.ops.bodies import MAX_BODY_BYTES
from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, free_port
from tests.conftest import ROOT, Workers
from tests.ops.conftest import TOKENS, Server, dashboard_env, wait_status


def test_submitted_run_completes_lists_by_status_and_cancels(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    with server.http() as http:
        queued = http.post("/v1/runs", json={"task": "cancel me", "metadata": {"ticket": "T-1"}})
        assert queued.status_code == 201, queued.text
        doomed = queued.json()["run_id"]
        assert http.get("/v1/runs", params={"status": "queued"}).json()["runs"][0]["run_id"] == doomed
        cancelled = http.post(f"/v1/runs/{doomed}/cancel")
        assert cancelled.json() == {"run_id": doomed, "cancelled": True, "status": "cancelled"}
        again = http.post(f"/v1/runs/{doomed}/cancel")
        assert again.json() == {"run_id": doomed, "cancelled": False, "status": "cancelled"}

        for role in ("planner", "researcher", "summarizer"):
            echo_workers.spawn(role)
        created = http.post("/v1/runs", json={"task": "Explain streams.", "deadline": 600,
                                              "metadata": {"ticket": "T-2", "team": "docs"}})
        assert created.status_code == 201
        run_id = created.json()["run_id"]
        doc = wait_status(http, run_id, "done")
        assert doc["result"] and doc["error"] is None and doc["hops"] == 3
        assert doc["record"]["metadata"] == {"ticket": "T-2", "team": "docs"}
        assert float(doc["record"]["updated_at"]) >= float(doc["record"]["created_at"])
        assert client.hget(keys.run(run_id), "status") == b"done"

        def listed(status: str) -> list[str]:
            return [r["run_id"] for r in http.get("/v1/runs", params={"status": status}).json()["runs"]]

        assert listed("done") == [run_id]
        assert listed("cancelled") == [doomed]
        assert listed("queued") == [] and listed("failed") == []
        everything = http.get("/v1/runs", params={"limit": 1}).json()["runs"]
        assert [r["run_id"] for r in everything] == [run_id]  # newest first
        assert http.get("/v1/runs", params={"status": "lost"}).status_code == 422
        assert http.get("/v1/runs", params={"limit": 0}).status_code == 422


def test_tokens_are_required_on_api_routes_only(server: Server, redis_url: str) -> None:
    with server.http(token=None) as anon, server.http("not-a-token") as wrong, server.http(TOKENS[1]) as second:
        for method, path in [("POST", "/v1/runs"), ("GET", "/v1/runs"), ("GET", "/v1/runs/x"),
                             ("POST", "/v1/runs/x/cancel"), ("GET", "/v1/runs/x/events"), ("GET", "/api/runs/x"),
                             ("GET", "/api/snapshot"), ("GET", "/api/dead")]:
            for who in (anon, wrong):
                res = who.request(method, path, json={"task": "sneak in"})
                assert res.status_code == 401, (method, path, res.text)
                assert res.headers["www-authenticate"] == "Bearer"
        assert anon.get("/v1/runs").json() == {"detail": "a bearer token is required (Authorization: Bearer <token>)"}
        assert wrong.get("/v1/runs").json() == {"detail": "the bearer token is not valid"}
        assert anon.get("/v1/runs", headers={"Authorization": f"Basic {TOKENS[0]}"}).status_code == 401
        assert anon.get("/healthz").status_code == 200 and "<svg" in anon.get("/").text
        assert second.get("/v1/runs").status_code == 200
        # The token in the query string counts only on server-sent-events GETs (EventSource sends no headers).
        assert anon.get("/v1/runs", params={"access_token": TOKENS[0]}).status_code == 401
        sse = {"Accept": "text/event-stream"}
        with anon.stream("GET", "/api/events", params={"access_token": "wrong"}, headers=sse) as res:
            assert res.status_code == 401
        with anon.stream("GET", "/api/events", params={"access_token": TOKENS[1]}, headers=sse) as res:
            assert res.status_code == 200
            assert next(res.iter_lines()) == "event: hello"


JSON = {"Content-Type": "application/json"}


def test_bad_bodies_get_422_or_413_and_missing_runs_404(server: Server, client: redis.Redis, keys: Keys) -> None:
    with server.http() as http:
        def refused(body: Any, status: int = 422) -> str:
            res = (http.post("/v1/runs", content=body, headers=JSON) if isinstance(body, bytes)
                   else http.post("/v1/runs", json=body))
            assert res.status_code == status, res.text
            detail: str = res.json()["detail"]
            assert "\n" not in detail
            return detail

        assert refused({"task": ""}) == "Expected `str` of length >= 1 - at `$.task`"
        assert "$.task" in refused({"task": "  \n "})
        assert refused({"task": "hi", "urgency": 1}) == "Object contains unknown field `urgency`"
        assert refused({"task": "hi", "priority": "urgent"}) == "Invalid enum value 'urgent' - at `$.priority`"
        assert refused({"task": "hi", "deadline": -5}) == "Expected `float` > 0.0 - at `$.deadline`"
        assert refused({"task": "hi", "deadline": "soon"}) == "Expected `float | null`, got `str` - at `$.deadline`"
        assert "$.metadata" in refused({"task": "hi", "metadata": {"bad key": "x"}})
        assert "$.metadata" in refused({"task": "hi", "metadata": {f"k{i}": "v" for i in range(40)}})
        assert "$.workflow" in refused({"task": "hi", "workflow": "a:b"})
        assert refused({"task": "hi", "workflow": "nosuch"}).startswith("unknown workflow 'nosuch'")
        assert refused({}) == "Object missing required field `task`"
        assert refused(b"{not json").startswith("the request body is not valid JSON")
        assert refused(b"") == "the request body is empty (expected a JSON object)"
        big = json.dumps({"task": "x" * (MAX_BODY_BYTES + 10)}).encode()
        assert refused(big, 413) == f"the request body is over {MAX_BODY_BYTES} bytes"
        chunked = http.post("/v1/runs", content=iter([big[:40_000], big[40_000:]]), headers=JSON)  # no Content-Length
        assert chunked.status_code == 413
        assert http.post("/v1/runs", json={"task": " "}).status_code == 422
        assert http.post("/v1/runs", json={"task": "hi", "extra": 1}).status_code == 422
        assert client.keys() == [keys.audit().encode()]  # nothing refused was written (but the audit entries)

        for res in (http.get("/v1/runs/nope"), http.post("/v1/runs/nope/cancel"), http.get("/v1/runs/nope/events")):
            assert res.status_code == 404
            assert res.json() == {"detail": "no run 'nope' (it never existed or its record expired)"}
        assert http.get("/v1/runs/nope/events", params={"after": "bogus"}).status_code == 422


def test_curl_submits_with_a_token_and_is_refused_without(server: Server, client: redis.Redis, keys: Keys) -> None:
    def curl(*args: str) -> tuple[int, str]:
        done = subprocess.run(["curl", "-sS", "-w", "\n%{http_code}", *args], capture_output=True, text=True,
                              timeout=60, check=True)
        body, _, code = done.stdout.rpartition("\n")
        return int(code), body

    code, body = curl("-X", "POST", f"{server.url}/v1/runs", "-H", "Content-Type: application/json",
                      "-H", f"Authorization: Bearer {TOKENS[0]}", "--data", '{"task": "from curl"}')
    assert code == 201, body
    run_id = json.loads(body)["run_id"]
    assert client.hget(keys.run(run_id), "task") == b"from curl"
    code, body = curl("-X", "POST", f"{server.url}/v1/runs", "-H", "Content-Type: application/json",
                      "-H", f"Authorization: Bearer {TOKENS[0]}", "--data", '{"task": "later", "priority": "batch"}')
    assert code == 201, body
    batch_run = json.loads(body)["run_id"]
    assert client.hget(keys.run(batch_run), "priority") == b"batch"
    assert client.hget(keys.run(run_id), "priority") == b"interactive"
    assert client.xlen(keys.stream("seed", "planner", 0, "batch")) == 1
    code, body = curl("-X", "POST", f"{server.url}/v1/runs", "--data", '{"task": "from curl"}')
    assert (code, json.loads(body)) == (401, {"detail": "a bearer token is required (Authorization: Bearer <token>)"})
    code, body = curl(f"{server.url}/v1/runs/{run_id}", "-H", f"Authorization: Bearer {TOKENS[1]}")
    assert code == 200 and json.loads(body)["status"] == "queued"


def test_openapi_document_is_current_and_documents_the_bodies() -> None:
    doc = create_app(Settings(), SEED).openapi()
    published = (ROOT / "docs" / "openapi.json").read_text(encoding="utf-8")
    assert json.loads(published) == doc, "docs/openapi.json is stale: run `make openapi`"
    schema = doc["paths"]["/v1/runs"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert schema["required"] == ["task"] and schema["additionalProperties"] is False
    assert schema["properties"]["deadline"]["anyOf"][0]["exclusiveMinimum"] == 0
    routes = {"/v1/runs", "/v1/runs/{run_id}", "/v1/runs/{run_id}/cancel", "/v1/runs/{run_id}/events"}
    assert routes <= set(doc["paths"])


def test_dashboard_refuses_to_listen_beyond_loopback_without_tokens(redis_url: str) -> None:
    done = subprocess.run([sys.executable, "-m", "baton", "dashboard", "--host", "0.0.0.0", "--port", str(free_port())],
                          env=dashboard_env(redis_url), cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "baton: error: refusing to listen on 0.0.0.0 without authentication: set BATON_API_TOKENS (or bind 127.0.0.1)"]
    assert [is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "[::1]", "127.0.0.2", "0.0.0.0", "::",
                                     "10.0.0.1", "example.org")] == [True] * 5 + [False] * 4


def _sse(http: httpx.Client, path: str, **kwargs: Any) -> list[dict[str, str]]:
    """The server-sent events of ``path`` until the server ends the stream (after a terminal event)."""
    events: list[dict[str, str]] = []
    current: dict[str, str] = {}
    headers = {"Accept": "text/event-stream", **kwargs.pop("headers", {})}
    with http.stream("GET", path, headers=headers, **kwargs) as res:
        assert res.status_code == 200, res.read()
        assert res.headers["content-type"].startswith("text/event-stream")
        for line in res.iter_lines():
            if not line:
                if current:
                    events.append(current)
                current = {}
            elif not line.startswith(":"):
                name, _, value = line.partition(": ")
                current[name] = value
    return events


def test_run_events_stream_live_and_resume_from_last_event_id(server: Server, echo_workers: Workers) -> None:
    with server.http() as http:
        for role in ("planner", "researcher", "summarizer"):
            echo_workers.spawn(role)
        run_id = http.post("/v1/runs", json={"task": "Explain streams."}).json()["run_id"]
        live = _sse(http, f"/v1/runs/{run_id}/events")  # opened at once: follows the run while it runs
        kinds = [e["event"] for e in live]
        assert kinds[0] == "queued" and kinds[-1] == "done", kinds
        assert kinds.count("hop_finished") == 3 and kinds.count("done") == 1
        assert all(json.loads(e["data"])["type"] == e["event"] for e in live)
        assert all(json.loads(e["data"])["run_id"] == run_id for e in live)
        ids = [e["id"] for e in live]
        assert len(set(ids)) == len(ids)
        assert json.loads(live[-1]["data"])["output"] == http.get(f"/v1/runs/{run_id}").json()["result"]

        middle = ids[len(ids) // 2]
        resumed = _sse(http, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": middle})
        assert [e["id"] for e in resumed] == ids[ids.index(middle) + 1:]
        assert _sse(http, f"/v1/runs/{run_id}/events", params={"after": middle}) == resumed
        assert _sse(http, f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": ids[-1]}) == []  # none after the end
    with server.http(token=None) as anon:  # the way EventSource sends the token
        again = _sse(anon, f"/v1/runs/{run_id}/events", params={"access_token": TOKENS[0]})
        assert again == live


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium (make test installs it)")
def test_page_asks_for_the_token_once_and_uses_it(server: Server, client: redis.Redis, keys: Keys) -> None:
    from playwright.sync_api import Dialog, sync_playwright

    from tests.ops.test_dashboard import CHROMIUM, CHROMIUM_ARGS

    asked: list[str] = []
    errors: list[str] = []

    def answer(dialog: Dialog) -> None:
        asked.append(dialog.message)
        dialog.accept("not-a-token" if len(asked) == 1 else TOKENS[1])

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("dialog", answer)
        page.goto(server.url)
        page.wait_for_selector("#conn.live", timeout=30_000)
        page.fill("#task-input", "from the page")
        page.click("#submit-btn")
        page.wait_for_function("() => document.querySelector('#submit-note').textContent.startsWith('submitted run')",
                               timeout=30_000)
        page.reload()  # the token is kept for the tab: no question this time
        page.wait_for_selector("#conn.live", timeout=30_000)
        browser.close()
    assert asked == ["This dashboard needs an API token (one of BATON_API_TOKENS):",
                     "That token was refused. API token:"]
    assert not errors, errors
    tasks = [client.hget(keys.run(r.decode()), "task") for r in client.zrange(keys.runs(), 0, -1)]
    assert tasks == [b"from the page"]
