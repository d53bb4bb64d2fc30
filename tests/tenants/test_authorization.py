"""Authorization route by route: every ``/v1`` and ``/api`` route of the app, as another tenant,
with tenant A's ids, answers 404 (or 403 where it spans every tenant) and changes nothing; lists
show none of A's ids; an admin sees everything. The routes are read from the app itself, so a
route added later is exercised too (and this test fails until its ids are named below).

Real redis-server, the app in process, and an echo worker of the reviewed workflow in its own process."""

from __future__ import annotations

import re
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys
from baton.broker.audit import read_audit
from tests.conftest import Workers
from tests.tenants.conftest import Tenants
from tests.waiting import wait_for

SHARED = {
    ("GET", "/v1/models/{model}"): "a workflow, served to every tenant (not a tenant's)",
}
"""Routes with path parameters that name no tenant's object, and why."""

SPANNING = {("GET", "/api/snapshot"), ("GET", "/api/events"), ("GET", "/api/dead")}
"""Routes that show every tenant's work: an admin's only (403 for a tenant)."""

BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("POST", "/v1/reviews/{review_id}"): {"decision": "approve"},
    ("POST", "/v1/runs/{run_id}/fork"): {"from_role": "planner"},
    ("POST", "/v1/runs/{run_id}/signal"): {"name": "go", "data": {}},
}
"""A valid body per route that takes one (so the answer is about the id, not the body)."""


def _routes(app: Any) -> list[tuple[str, str, bool]]:
    """``(method, path, is_event_stream)`` of every ``/v1`` and ``/api`` route in the app's OpenAPI document."""
    out = []
    for path, ops in app.openapi()["paths"].items():
        if not path.startswith(("/v1/", "/api/")):
            continue
        for method, op in ops.items():
            sse = "text/event-stream" in str(op.get("responses", {}))
            out.append((method.upper(), path, sse or path == "/api/events"))
    return out


@pytest.fixture
def reviewed_workers(workers: Workers) -> Workers:
    workers.env["BATON_MODEL"] = "echo"
    workers.spawn("planner", "--workflow", "reviewed")
    return workers


def test_every_route_hides_another_tenants_objects(redis_url: str, client: redis.Redis, keys: Keys,
                                                    tenants: Tenants, reviewed_workers: Workers) -> None:
    settings = Settings(redis_url=redis_url, tenants_file=str(tenants.path), webhook_allow="127.0.0.1")
    app = create_app(settings, SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        a, b, admin = (tenants.headers(t) for t in ("acme", "globex", "ops"))
        made = http.post("/v1/runs", json={"task": "plan the launch", "workflow": "reviewed",
                                           "webhook": "http://127.0.0.1:9/hook"}, headers=a)
        assert made.status_code == 201, made.text
        run_id = made.json()["run_id"]
        assert client.hget(keys.run(run_id), "tenant") == b"acme"
        wait_for(lambda: http.get(f"/v1/runs/{run_id}", headers=a).json()["status"] == "review", 120,
                 "the run to wait for its review")
        review_id = http.get(f"/v1/reviews/{run_id}", headers=a).json()["review_id"]
        sched = http.post("/v1/schedules", json={"name": "acme-nightly", "cron": "0 3 * * *", "task": "t"}, headers=a)
        assert sched.status_code == 201, sched.text
        turn = http.post("/v1/runs", json={"task": "hello", "thread": "acme-chat"}, headers=a)
        assert turn.status_code == 201, turn.text
        # B's message to a thread of the same name is B's own thread: it neither joins nor reads A's
        own = http.post("/v1/runs", json={"task": "hi", "thread": "acme-chat", "thread_policy": "reject"}, headers=b)
        assert own.status_code == 201, own.text
        http.delete("/v1/threads/acme-chat", headers=b)
        ids = {"run_id": run_id, "review_id": review_id, "name": "acme-nightly", "thread_id": "acme-chat"}
        admin_ids = {**ids, "thread_id": "acme:acme-chat"}  # (the admin names a tenant's thread by its stored id)
        secrets = [run_id, review_id, "acme-nightly", turn.json()["run_id"]]

        routes = _routes(app)
        assert ("GET", "/v1/runs/{run_id}", False) in routes and len(routes) > 15
        for method, path, sse in routes:
            params = re.findall(r"{(\w+)}", path)
            if (method, path) in SHARED:
                continue
            missing = [p for p in params if p not in ids]
            assert not missing, f"{method} {path}: name tenant A's id for {missing} in this test (or list it in SHARED)"
            url = path.format(**ids)
            kwargs: dict[str, Any] = {"json": BODIES[(method, path)]} if (method, path) in BODIES else {}
            if method == "POST" and not params:
                continue  # creating one's own object: exercised below
            if sse:
                with http.stream(method, url, headers=b) as res:
                    status = res.status_code
            else:
                res = http.request(method, url, headers=b, **kwargs)
                status = res.status_code
                if status == 200 and path != "/v1/audit":  # (the audit shows B its own calls, with the ids it sent)
                    assert not any(s in res.text for s in secrets), f"{method} {path} shows tenant A's ids: {res.text}"
            want = {403} if (method, path) in SPANNING else {404} if params else {200}
            assert status in want, f"{method} {url} as another tenant answered {status}, not {want}"
            if params and not sse and method == "GET":  # the id is real: its owner and the admin get it
                assert http.get(url, headers=a).status_code == 200, f"{method} {url} as its tenant"
                as_admin = path.format(**admin_ids)
                assert http.get(as_admin, headers=admin).status_code == 200, f"{method} {as_admin} as the admin"

        # creating with A's schedule name does not take A's schedule over
        taken = http.post("/v1/schedules", json={"name": "acme-nightly", "cron": "* * * * *", "task": "x"}, headers=b)
        assert taken.status_code == 409
        assert http.get("/v1/schedules/acme-nightly", headers=a).json()["cron"] == "0 3 * * *"
        # nothing of A's changed
        assert http.get(f"/v1/runs/{run_id}", headers=a).json()["status"] == "review"
        assert http.get(f"/v1/reviews/{review_id}", headers=a).json()["pending"] is True
        assert http.get("/v1/schedules/acme-nightly", headers=a).json()["paused"] is False
        # B's own run is B's: listed for B and the admin, not for A
        mine = http.post("/v1/runs", json={"task": "b's work"}, headers=b).json()["run_id"]
        a_turn, b_turn = turn.json()["run_id"], own.json()["run_id"]
        assert {r["run_id"] for r in http.get("/v1/runs", headers=b).json()["runs"]} == {mine, b_turn}
        assert {r["run_id"] for r in http.get("/v1/runs", headers=a).json()["runs"]} == {run_id, a_turn}
        everyone = {run_id, mine, a_turn, b_turn}
        assert {r["run_id"] for r in http.get("/v1/runs", headers=admin).json()["runs"]} == everyone
        # A's thread is untouched by B's delete, and B's history never held A's turn
        assert http.get("/v1/threads/acme-chat", headers=a).json()["active"] == a_turn

        # every state-changing call is audited: who, what, when, from where (the refused ones too)
        entries = read_audit(client, keys, limit=500)
        refused = [e for e in entries if e.tenant == "globex" and e.path == f"/v1/runs/{run_id}/cancel"]
        assert refused and refused[0].status == 404 and refused[0].method == "POST" and refused[0].client
        assert refused[0].token and refused[0].token not in tenants.tokens["globex"]
        created = [e for e in entries if e.tenant == "acme" and e.path == "/v1/runs" and e.status == 201]
        assert len(created) == 2 and created[0].at > 0  # (the reviewed run and the thread turn)
        shown = http.get("/v1/audit", headers=b).json()["entries"]
        assert shown and {e["tenant"] for e in shown} == {"globex"}
        assert {e["tenant"] for e in http.get("/v1/audit", headers=admin).json()["entries"]} >= {"acme", "globex"}
        assert all(tenants.tokens[t] not in str(client.xrange(keys.audit())) for t in tenants.tokens)


def test_no_tokens_means_one_open_deployment(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    app = create_app(Settings(redis_url=redis_url), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        run_id = http.post("/v1/runs", json={"task": "open"}).json()["run_id"]
        assert http.get(f"/v1/runs/{run_id}").status_code == 200
        assert http.get("/api/dead").status_code == 200
        assert client.hget(keys.run(run_id), "tenant") is None
        [entry] = read_audit(client, keys)
        assert (entry.who, entry.method, entry.path, entry.status) == ("admin", "POST", "/v1/runs", 201)


def test_the_mcp_and_a2a_faces_are_an_admins(redis_url: str, tenants: Tenants) -> None:
    app = create_app(Settings(redis_url=redis_url, tenants_file=str(tenants.path)), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        call = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
        mcp = {"Accept": "application/json, text/event-stream"}
        assert http.post("/mcp", json=call, headers={**mcp, **tenants.headers("acme")}).status_code == 403
        assert http.post("/mcp", json=call, headers={**mcp, **tenants.headers("ops")}).status_code == 200
        assert http.post("/a2a/seed", json=call, headers=tenants.headers("acme")).status_code == 403
        assert http.post("/a2a/seed", json=call, headers=tenants.headers("ops")).status_code != 403


def test_every_route_answers_401_without_a_token(redis_url: str, tenants: Tenants) -> None:
    app = create_app(Settings(redis_url=redis_url, tenants_file=str(tenants.path)), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        for method, path, sse in _routes(app):
            if (method, path) in SHARED:
                continue
            url = re.sub(r"{\w+}", "x", path)
            if sse:
                with http.stream(method, url) as res:
                    status = res.status_code
            else:
                status = http.request(method, url, json={}).status_code
            assert status == 401, f"{method} {path} without a token answered {status}"
