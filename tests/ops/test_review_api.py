"""Human review and fork/replay over the HTTP API (``/v1/reviews``, ``/v1/runs/{id}/fork|replay``),
and the dashboard's review queue in headless Chromium: a real ``baton dashboard`` subprocess with
API tokens, real Redis, echo workers in their own processes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, get_run, scratchpad
from tests.conftest import Workers
from tests.ops.conftest import TOKENS, Server, wait_status
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")
PENDING_FIELDS = {"review_id", "run_id", "workflow", "role", "agent", "hop", "task", "output", "requested_at",
                  "deadline"}


def _start(workers: Workers, workflow: str | None = "reviewed") -> None:
    for role in ROLES:
        workers.spawn(role, *(("--workflow", workflow) if workflow else ()))


def _submit(http: httpx.Client, task: str, workflow: str = "reviewed") -> str:
    res = http.post("/v1/runs", json={"task": task, "workflow": workflow})
    assert res.status_code == 201, res.text
    run_id: str = res.json()["run_id"]
    return run_id


def _events(client: redis.Redis, keys: Keys, run_id: str) -> list[dict[str, Any]]:
    return [json.loads(fields[b"ev"]) for _, fields in client.xrange(keys.events(run_id))]


def test_reviews_are_listed_decided_once_and_edited_output_reaches_the_next_role(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    _start(echo_workers)
    with server.http() as http:
        first, second, third = (_submit(http, f"plan number {i}") for i in range(3))
        for run_id in (first, second, third):
            wait_status(http, run_id, "review")
        listed = http.get("/v1/reviews").json()["reviews"]
        assert {r["run_id"] for r in listed} == {first, second, third}
        assert [r["requested_at"] for r in listed] == sorted(r["requested_at"] for r in listed)  # oldest first
        assert all(set(r) == PENDING_FIELDS for r in listed)
        [proposed] = [r for r in listed if r["run_id"] == first]
        assert (proposed["role"], proposed["agent"], proposed["hop"]) == ("planner", "Alice", 0)
        assert proposed["task"] == "plan number 0" and proposed["output"].startswith("Planner")
        assert http.get("/v1/reviews", params={"limit": 2}).json()["reviews"] == listed[:2]
        shown = http.get(f"/v1/reviews/{first}").json()  # by its run's id
        assert shown["review_id"] == proposed["review_id"] and shown["pending"] and shown["status"] == "pending"

        url = f"/v1/reviews/{proposed['review_id']}"
        approved = http.post(url, json={"decision": "approve", "output": "EDITED PLAN: define, then compare."})
        assert approved.status_code == 200, approved.text
        body = approved.json()
        assert body == {"review_id": proposed["review_id"], "run_id": first, "decision": "approve",
                        "status": "approved", "output": "EDITED PLAN: define, then compare.", "reason": "",
                        "decided_at": body["decided_at"], "first": True}
        again = http.post(url, json={"decision": "reject", "reason": "changed my mind"})
        assert again.status_code == 200 and again.json() == {**body, "first": False}  # the first decision stands

        done = wait_status(http, first, "done")
        assert "EDITED PLAN: define, then compare." in done["result"]
        [researched] = scratchpad(client, keys, first, "Bob")
        assert researched.task == "Research and elaborate: EDITED PLAN: define, then compare."
        decided = [e for e in _events(client, keys, first) if e["type"] == "review_decided"]
        assert [(e["decision"], e["output"]) for e in decided] == [("approve", "EDITED PLAN: define, then compare.")]

        rejected = http.post(f"/v1/reviews/{second}", json={"decision": "reject", "reason": "off topic"}).json()
        assert (rejected["decision"], rejected["status"], rejected["reason"], rejected["first"]) == (
            "reject", "rejected", "off topic", True)
        assert rejected["output"] == ""
        failed = wait_status(http, second, "failed")
        assert failed["error"] == "off topic"

        assert http.post(f"/v1/runs/{third}/cancel").json()["cancelled"]
        late = http.post(f"/v1/reviews/{third}", json={"decision": "approve"})
        assert late.status_code == 409 and "cancelled" in late.json()["detail"], late.text
        assert get_run(client, keys, third)["status"] == "cancelled"  # type: ignore[index]
        assert [r["run_id"] for r in http.get("/v1/reviews").json()["reviews"]] == []


def test_review_routes_refuse_bad_bodies_unknown_reviews_and_missing_tokens(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    _start(echo_workers)
    with server.http() as http, server.http(token=None) as anon:
        run_id = _submit(http, "plan something")
        wait_status(http, run_id, "review")
        url = f"/v1/reviews/{run_id}"

        def refused(body: Any) -> str:
            res = (http.post(url, content=body, headers={"Content-Type": "application/json"})
                   if isinstance(body, bytes) else http.post(url, json=body))
            assert res.status_code == 422, res.text
            detail: str = res.json()["detail"]
            return detail

        assert refused({"decision": "maybe"}) == "Invalid enum value 'maybe' - at `$.decision`"
        assert refused({}) == "Object missing required field `decision`"
        assert refused({"decision": "reject", "output": "x"}) == ("`output` goes with `approve` only (a rejected "
                                                                 "output is not handed off)")
        assert refused({"decision": "approve", "by": "me"}) == "Object contains unknown field `by`"
        assert "$.reason" in refused({"decision": "reject", "reason": "x" * 3000})
        assert refused(b"{oops").startswith("the request body is not valid JSON")
        assert refused(b"") == "the request body is empty (expected a JSON object)"

        for res in (http.post("/v1/reviews/nope", json={"decision": "approve"}), http.get("/v1/reviews/nope")):
            assert res.status_code == 404
            assert res.json() == {"detail": "no review 'nope' (nor a run with a review of that id)"}
        for method, path in [("GET", "/v1/reviews"), ("GET", url), ("POST", url), ("POST", f"/v1/runs/{run_id}/fork"),
                             ("POST", f"/v1/runs/{run_id}/replay")]:
            res = anon.request(method, path, json={"decision": "approve", "from_role": "planner"})
            assert res.status_code == 401, (method, path, res.text)
        assert get_run(client, keys, run_id)["status"] == "review"  # type: ignore[index]  # nothing refused acted
        assert http.get("/v1/reviews").json()["reviews"][0]["run_id"] == run_id


def test_fork_and_replay_start_runs_that_complete(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    _start(echo_workers, None)
    with server.http() as http:
        source = _submit(http, "Explain streams.", "seed")
        original = wait_status(http, source, "done")

        forked = http.post(f"/v1/runs/{source}/fork", json={"from_role": "researcher", "task": "Research queues."})
        assert forked.status_code == 201, forked.text
        fork_id = forked.json()["run_id"]
        assert fork_id != source
        edited = wait_status(http, fork_id, "done")
        assert "Research queues." in edited["result"] and "Research queues." not in original["result"]
        assert (edited["record"]["forked_from"], edited["record"]["forked_at"]) == (source, "researcher")
        assert scratchpad(client, keys, fork_id, "Alice") == scratchpad(client, keys, source, "Alice")  # copied

        assert "journal_from" not in edited["record"]
        same = http.post(f"/v1/runs/{source}/fork", json={"from_role": "summarizer", "reuse_journal": True})
        same_done = wait_status(http, same.json()["run_id"], "done")
        assert same_done["result"] == original["result"]  # its original input, same output
        assert same_done["record"]["journal_from"] == source  # code roles would reuse the source's journal

        replayed = http.post(f"/v1/runs/{source}/replay", params={"reuse_journal": "true"})
        assert replayed.status_code == 201, replayed.text
        again = wait_status(http, replayed.json()["run_id"], "done")
        assert again["result"] == original["result"] and again["record"]["replayed_from"] == source
        assert again["record"]["journal_from"] == source

        for res in (http.post("/v1/runs/nope/fork", json={"from_role": "planner"}), http.post("/v1/runs/nope/replay")):
            assert res.status_code == 404
            assert res.json() == {"detail": "no run 'nope' (it never existed or its record expired)"}
        unknown = http.post(f"/v1/runs/{source}/fork", json={"from_role": "critic"})
        assert unknown.status_code == 409
        assert unknown.json()["detail"] == (f"role 'critic' has no scratchpad entry in run {source} (roles that ran: "
                                            "planner, researcher, summarizer)")
        for body in ({}, {"from_role": "a b"}, {"from_role": "researcher", "task": " "}, {"from_role": "x", "n": 1}):
            assert http.post(f"/v1/runs/{source}/fork", json=body).status_code == 422, body
        runs = http.get("/v1/runs", params={"limit": 50}).json()["runs"]
        assert len(runs) == 4  # the source, two forks and a replay: nothing refused started a run


def test_openapi_document_lists_the_review_and_fork_routes() -> None:
    doc = create_app(Settings(), SEED).openapi()
    paths = doc["paths"]
    routes = {"/v1/reviews", "/v1/reviews/{review_id}", "/v1/runs/{run_id}/fork", "/v1/runs/{run_id}/replay"}
    assert routes <= set(paths)
    decision = paths["/v1/reviews/{review_id}"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert decision["required"] == ["decision"] and decision["properties"]["decision"]["enum"] == ["approve", "reject"]
    fork = paths["/v1/runs/{run_id}/fork"]["post"]
    assert fork["requestBody"]["content"]["application/json"]["schema"]["required"] == ["from_role"]
    assert {"201", "404", "409", "422"} <= set(fork["responses"])


@pytest.mark.browser
@pytest.mark.skipif(not Path("/usr/bin/chromium").exists(), reason="needs /usr/bin/chromium (make test installs it)")
def test_page_review_queue_approves_an_edited_output(
    server: Server, client: redis.Redis, keys: Keys, echo_workers: Workers
) -> None:
    from playwright.sync_api import sync_playwright

    from tests.ops.test_dashboard import CHROMIUM, CHROMIUM_ARGS

    _start(echo_workers)
    edited = "Edited in the browser: 1. define supervised learning 2. two examples"
    errors: list[str] = []
    with server.http() as http:
        run_id = _submit(http, "Explain the importance of supervised learning.")
        wait_status(http, run_id, "review")
        [proposed] = http.get("/v1/reviews").json()["reviews"]
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.add_init_script(f"sessionStorage.setItem('baton-api-token', {json.dumps(TOKENS[0])})")
            page.goto(server.url)
            card = f".review-card[data-run-id='{run_id}']"
            page.wait_for_selector(card, timeout=30_000)
            assert page.input_value(f"{card} textarea") == proposed["output"]
            assert page.text_content("#reviews-count") == "(1 waiting)"
            page.fill(f"{card} textarea", edited)
            for _ in range(2):  # the queue refreshes with each snapshot: the edit must survive them
                with page.expect_response(lambda r: r.url.endswith("/v1/reviews?limit=50"), timeout=30_000):
                    pass
            assert page.input_value(f"{card} textarea") == edited
            page.click(f"{card} button.approve")
            page.wait_for_function(
                "() => document.querySelector('#review-note').textContent.startsWith('approved (edited)')",
                                   timeout=30_000)
            page.wait_for_selector(card, state="detached", timeout=30_000)
            assert page.is_visible("#reviews-empty")
            browser.close()
        done = wait_status(http, run_id, "done")
    assert not errors, errors
    [researched] = scratchpad(client, keys, run_id, "Bob")
    assert researched.task == f"Research and elaborate: {edited}"
    assert edited in done["result"]
    decided = wait_for(lambda: [e for e in _events(client, keys, run_id) if e["type"] == "review_decided"], 10,
                       "the review_decided event")
    assert [(e["decision"], e["output"]) for e in decided] == [("approve", edited)]
