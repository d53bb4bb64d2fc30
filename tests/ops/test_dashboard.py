"""``baton dashboard``: its HTTP API on a real Redis, and the page in headless Chromium with real workers."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, free_port, get_run, list_runs, submit
from baton.protocol import Task
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import SEED_TASK
from tests.waiting import wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run", "--disable-sync"]


@contextmanager
def live_dashboard(url: str) -> Iterator[Any]:
    """A headless Chromium page on the dashboard at ``url``, once its live feed is connected; on
    leaving, the browser is closed and the page must have raised no script error."""
    from playwright.sync_api import sync_playwright

    errors: list[str] = []
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(url)
        page.wait_for_selector("#conn.live", timeout=30_000)
        yield page
        browser.close()
    assert not errors, errors


def test_api_submits_lists_traces_and_exports_backlog(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    app = create_app(Settings(redis_url=redis_url), SEED, interval=0.2)
    with TestClient(app, base_url="http://localhost") as http:
        assert "<svg" in http.get("/").text
        assert http.post("/api/runs", json={"task": SEED_TASK}).status_code == 404  # the page submits over /v1
        assert http.post("/v1/runs", json={"task": "   "}).status_code == 422
        created = http.post("/v1/runs", json={"task": SEED_TASK})
        assert created.status_code == 201
        run_id = created.json()["run_id"]
        assert client.xlen(keys.stream("seed", "planner")) == 1
        runs = http.get("/v1/runs").json()["runs"]
        assert [(r["run_id"], r["status"], r["task"]) for r in runs] == [(run_id, "queued", SEED_TASK)]
        tr = http.get(f"/api/runs/{run_id}").json()["trace"]
        assert tr["status"] == "queued" and tr["hops"] == []
        assert [(w["role"], w["sender"], w["task"]) for w in tr["waiting"]] == [("planner", "submit", SEED_TASK)]
        assert http.get("/api/runs/nope").status_code == 404

        planner = frozenset({"workflow": "seed", "role": "planner"}.items())

        def samples_with_the_new_entry() -> dict[tuple[str, frozenset[tuple[str, str]]], float] | None:
            got = {(f.name, frozenset(s.labels.items())): s.value
                   for f in text_string_to_metric_families(http.get("/metrics").text) for s in f.samples}
            return got if got.get(("baton_stream_length", planner)) == 1 else None

        samples = wait_for(samples_with_the_new_entry, 30, "the sampler to see the new entry")
        assert samples[("baton_stream_lag", planner)] == 1
        assert samples[("baton_stream_pending", planner)] == 0
        assert samples[("baton_stream_length", planner)] == 1
        assert samples[("baton_runs", frozenset({"status": "queued"}.items()))] == 1
        snap = http.get("/api/snapshot").json()
        assert snap["history"] and snap["snapshot"]["runs_in_flight"] == 1
        assert http.get("/api/dead").json() == {"total": 0, "entries": []}


@pytest.fixture
def dashboard_url(worker_env: dict[str, str], tmp_path: Path) -> Iterator[str]:
    """A ``baton dashboard`` subprocess on a free port."""
    port = free_port()
    with open(tmp_path / "dashboard.log", "wb") as log:  # the child keeps its copy
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)], env=worker_env,
                                cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2):
                return True
        except OSError:
            assert proc.poll() is None, (tmp_path / "dashboard.log").read_text()
            return False

    try:
        wait_for(healthy, 60, "the dashboard to start", interval=0.2)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_submits_a_task_and_draws_its_trace(
    client: redis.Redis, workers: Workers, dashboard_url: str, tmp_path: Path
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(client, 3, timeout=120)
    with live_dashboard(dashboard_url) as page:
        page.wait_for_selector("#streams tbody tr[data-role='summarizer']", timeout=30_000)
        page.fill("#task-input", SEED_TASK)
        page.click("#submit-btn")
        page.wait_for_selector("#run-status.done", timeout=120_000)
        page.wait_for_selector("#runs tr[data-run-id] .badge.done", timeout=30_000)
        page.wait_for_function("() => document.querySelectorAll('#chart polyline').length === 3", timeout=30_000)
        run_id = page.text_content("#run-title")
        assert run_id and client.hget(Keys().run(run_id), "status") == b"done"
        agents = page.eval_on_selector_all("#trace-svg g.agent", "els => els.map(e => e.dataset.role)")
        assert agents == ["submit", "planner", "researcher", "summarizer", "result"]
        arrows = page.eval_on_selector_all("#trace-svg g.msg text", "els => els.map(e => e.textContent)")
        assert [a for a in arrows if a.startswith("hop ")][0] == f"hop 0: {SEED_TASK}"
        assert len(page.query_selector_all("#trace-svg g.msg")) == 4  # three hops and the result
        assert len(page.query_selector_all("#pads .scratchpad")) == 3
        live = page.text_content("#streams tbody tr[data-role='planner'] td:last-child") or ""
        assert live.startswith("1/1 live")
        shot = tmp_path / "dashboard.png"
        page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if os.environ.get("BATON_UPDATE_SCREENSHOT"):
        shutil.copy(shot, ROOT / "docs" / "dashboard.png")


ATTACKER_PAGE = """<!doctype html><title>elsewhere</title><script>
window.attempts = Promise.allSettled([
  fetch("%(target)s/v1/runs", {method: "POST", mode: "no-cors", headers: {"Content-Type": "text/plain"},
                               body: JSON.stringify({task: "cross-origin text"})}),
  fetch("%(target)s/v1/runs", {method: "POST", mode: "no-cors", body: JSON.stringify({task: "cross-origin v1"})}),
  fetch("%(target)s/v1/runs", {method: "POST", mode: "cors", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify({task: "cross-origin cors"})}),
]).then(rs => rs.map(r => r.status));
</script>"""


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_refuses_cross_origin_writes_and_rebound_hosts(
    client: redis.Redis, keys: Keys, dashboard_url: str, tmp_path: Path
) -> None:
    """A page on another origin POSTs runs with ``no-cors`` ``text/plain`` fetches (no preflight), and a
    DNS-rebinding name that resolves to 127.0.0.1 loads the dashboard under its own origin: neither starts a run."""
    import http.server
    import threading

    from playwright.sync_api import sync_playwright

    page_html = (ATTACKER_PAGE % {"target": dashboard_url}).encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 (the handler's name)
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(page_html)

        def log_message(self, *_: object) -> None:
            pass

    evil = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), Attacker)
    threading.Thread(target=evil.serve_forever, daemon=True).start()
    port = dashboard_url.rsplit(":", 1)[1]
    try:
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=str(CHROMIUM),
                                         args=[*CHROMIUM_ARGS, "--host-resolver-rules=MAP rebind.test 127.0.0.1"])
            page = browser.new_page()
            page.goto(f"http://127.0.0.1:{evil.server_address[1]}/")
            page.wait_for_function("() => window.attempts !== undefined")
            statuses = page.evaluate("window.attempts")
            assert statuses == ["fulfilled", "fulfilled", "rejected"], statuses  # opaque replies; CORS refused
            rebound = page.goto(f"http://rebind.test:{port}/")
            assert rebound is not None and rebound.status == 400
            posted = page.evaluate("""async () => (await fetch("/v1/runs", {method: "POST",
                headers: {"Content-Type": "application/json"}, body: JSON.stringify({task: "rebound"})})).status""")
            assert posted == 400
            browser.close()
    finally:
        evil.shutdown()
    assert client.xlen(keys.stream("seed", "planner")) == 0, "a cross-origin page started a run"
    assert list_runs(client, keys, 10) == []


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_adds_pauses_resumes_and_deletes_a_schedule(
    client: redis.Redis, workers: Workers, dashboard_url: str
) -> None:
    from baton.broker.runs import run_metadata
    from baton.broker.schedules import get_schedule

    workers.spawn("planner", env={"BATON_MODEL": "echo", "BATON_UPKEEP_POLL_S": "0.2"})  # its upkeep fires ticks
    workers.wait_ready(client, 1, timeout=120)
    keys = Keys()
    row = "#schedules tr[data-name='every2']"
    with live_dashboard(dashboard_url) as page:
        assert page.is_visible("#schedules-empty")
        page.fill("#schedule-name", "bad")
        page.fill("#schedule-cron", "61 * * * *")
        page.fill("#schedule-task", "t")
        page.click("#schedule-add")
        page.wait_for_function("() => document.getElementById('schedule-note').textContent.startsWith('error:')",
                               timeout=30_000)
        assert "cron" in (page.text_content("#schedule-note") or "")
        page.fill("#schedule-name", "every2")
        page.fill("#schedule-cron", "* * * * * */2")  # seconds last: every 2 s
        page.fill("#schedule-task", "nightly report")
        page.select_option("#schedule-overlap", "allow")
        page.click("#schedule-add")
        page.wait_for_selector(row, timeout=30_000)
        s = get_schedule(client, keys, "every2")
        assert s is not None and (s.cron, s.task, s.overlap) == ("* * * * * */2", "nightly report", "allow")
        page.wait_for_selector(f"{row} a.run-link", timeout=60_000)  # the worker fired a tick; its run shows
        shown = page.text_content(f"{row} a.run-link") or ""
        fired = [r for r in list_runs(client, keys, 1000)
                 if run_metadata({k.decode(): v.decode() for k, v in client.hgetall(keys.run(r)).items()})
                 .get("schedule") == "every2"]
        assert shown and any(r.startswith(shown) for r in fired)
        page.click(f"{row} button.toggle")
        page.wait_for_selector(f"{row}[data-paused='1']", timeout=30_000)
        assert (p := get_schedule(client, keys, "every2")) is not None and p.paused
        page.click(f"{row} button.toggle")
        page.wait_for_selector(f"{row}[data-paused='']", timeout=30_000)
        assert (p := get_schedule(client, keys, "every2")) is not None and not p.paused
        page.click(f"{row} button.delete")
        page.wait_for_selector(row, state="detached", timeout=30_000)
        assert get_schedule(client, keys, "every2") is None


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_shows_what_runs_wait_for(
    client: redis.Redis, keys: Keys, workers: Workers, dashboard_url: str, tmp_path: Path
) -> None:
    env = {"BATON_MODEL": "echo", "BATON_RECLAIM_INTERVAL_S": "0.2", "BATON_TEST_FILE": str(tmp_path / "notes"),
           "NAP_S": "3600"}
    workers.spawn("--app", "tests.e2e.waitapps:timers", "--all-roles", env=env)
    asleep = submit(client, keys, Task(run_id="dash-nap", role="napper", task="t", workflow="timers"))
    asking = submit(client, keys, Task(run_id="dash-ask", role="approver", task="t", workflow="timers"))
    wait_for(lambda: {(get_run(client, keys, r) or {}).get("status") for r in (asleep, asking)} == {"waiting"},
             what="two parked runs", logs=workers.logs)
    with live_dashboard(dashboard_url) as page:
        page.wait_for_selector("#waits tr[data-run-id='dash-ask']", timeout=30_000)
        rows = page.eval_on_selector_all(
            "#waits tbody tr[data-run-id]",
            "els => els.map(e => [e.dataset.runId, e.querySelector('.what').textContent,"
            " e.querySelector('.until').textContent])")
        assert sorted(r[:2] for r in rows) == [["dash-ask", "signal approval"], ["dash-nap", "sleep"]]
        until = {r[0]: r[2] for r in rows}
        assert until["dash-ask"] == "no timeout" and until["dash-nap"] not in ("", "no timeout")
        page.wait_for_selector("#runs tr[data-run-id='dash-ask'] .badge.waiting", timeout=30_000)
        assert client.hget(keys.run(asking), "status") == b"waiting"


@pytest.mark.browser
@pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (make test installs it as root)")
def test_dashboard_in_chromium_lists_failed_webhooks_resends_one_and_submits_with_a_key(
    redis_url: str, client: redis.Redis, keys: Keys, dashboard_url: str
) -> None:
    """The failed completion webhooks (``baton webhooks failed``) with a Re-send button, and the submit
    form's idempotency key (a repeat gets the first run back)."""
    from baton import Client
    from baton.agents.webhooks import deliver_due
    from baton.broker import cancel_run
    from baton.broker.webhooks import get_delivery

    with Client(settings=Settings(redis_url=redis_url, webhook_allow="127.0.0.0/8")) as c:
        run_id = c.submit("hooked", webhook="http://127.0.0.2:9/hook").id
    cancel_run(client, keys, run_id)
    deliver_due(client, keys, Settings(redis_url=redis_url, webhook_allow="127.0.0.1"))  # refused: failed at once
    before = get_delivery(client, keys, run_id)
    assert before is not None and before.status == "failed", before
    with live_dashboard(dashboard_url) as page:
        row = f"#webhooks tr[data-run-id='{run_id}']"
        page.wait_for_selector(row, timeout=30_000)
        assert "BATON_WEBHOOK_ALLOW" in (page.text_content(f"{row} .why") or "")
        page.click(f"{row} .resend")
        page.wait_for_selector("#webhook-note:has-text('re-sending')", timeout=30_000)
        after = get_delivery(client, keys, run_id)
        assert after is not None and after.retry_from > before.retry_from  # a new retry window opened
        ids = []
        for _ in range(2):
            page.fill("#task-input", "keyed task")
            page.fill("#idem-input", "dash-key-1")
            page.click("#submit-btn")
            page.wait_for_selector("#submit-note:has-text('submitted run')", timeout=30_000)
            ids.append((page.text_content("#submit-note") or "").split()[-1])
            page.eval_on_selector("#submit-note", "e => { e.textContent = ''; }")
        assert ids[0] == ids[1] and client.exists(keys.run(ids[0]))
        keyed = [r for r in list_runs(client, keys, 100) if client.hget(keys.run(r), "task") == b"keyed task"]
        assert keyed == [ids[0]]  # one run for the two submits
