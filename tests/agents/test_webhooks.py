"""Completion webhooks against a real receiver on 127.0.0.1, real worker and scheduler processes and a
real Redis: the signature checks out at the receiver, a failing receiver gets retries, a killed
deliverer loses nothing, failed deliveries are listed and re-sent, and URLs outside
``BATON_WEBHOOK_ALLOW`` are refused at submit (client, API, CLI) and at delivery."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient

from baton import Client
from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.webhooks import check_url
from baton.agents.workflow import SEED
from baton.broker import Keys
from baton.broker.cancel import cancel_run
from baton.broker.webhooks import get_delivery
from baton.protocol import ProtocolError
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for

SECRET = "test-secret-0123456789"


class Receiver:
    """An HTTP server on 127.0.0.1 that checks each POST's signature as a user's receiver would (its
    own HMAC code, not baton's), answers 500 to the first ``fail`` requests and, with ``hang``,
    holds the first request that long."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.fail = 0
        self.hang = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers["Content-Length"]))
                stamp, signature = self.headers["Baton-Timestamp"], self.headers["Baton-Signature"]
                expected = "v1=" + hmac.new(SECRET.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()
                with receiver.lock:
                    hang, receiver.hang = receiver.hang, 0.0
                    failing = receiver.fail > 0
                    receiver.fail -= failing
                    receiver.received.append({
                        "path": self.path, "body": json.loads(body), "signed": hmac.compare_digest(expected, signature),
                        "fresh": abs(time.time() - int(stamp)) < 300, "attempt": int(self.headers["Baton-Attempt"]),
                        "delivery": self.headers["Baton-Delivery"], "answered": not failing and not hang})
                time.sleep(hang)
                self.send_response(500 if failing or hang else 204)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def for_run(self, run_id: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.received if r["delivery"] == run_id]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.server.shutdown()
    r.server.server_close()


def _hook_env(workers: Workers, **extra: str) -> None:
    workers.env.update({"BATON_MODEL": "echo", "BATON_UPKEEP_POLL_S": "0.2", "BATON_WEBHOOK_SECRET": SECRET,
                        "BATON_WEBHOOK_ALLOW": "127.0.0.1"} | extra)


def test_signed_delivery_with_retries_from_workers(redis_url: str, client: redis.Redis, keys: Keys,
                                                   workers: Workers, receiver: Receiver, tmp_path: Path) -> None:
    _hook_env(workers)
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(client)
    receiver.fail = 2  # the first two attempts get a 500
    settings = Settings(redis_url=redis_url, webhook_allow="127.0.0.1")
    with Client(settings=settings) as c:
        run = c.submit("Explain supervised learning.", webhook=f"{receiver.url}/hook?x=1")
        result = run.wait(timeout=240)
        got = wait_for(lambda: [r for r in receiver.for_run(run.id) if r["answered"]], timeout=120,
                       what="the delivery", logs=workers.logs)
    attempts = receiver.for_run(run.id)
    assert [a["attempt"] for a in attempts] == [1, 2, 3]  # one POST per attempt, retried after the 500s
    assert all(a["signed"] and a["fresh"] and a["path"] == "/hook?x=1" for a in attempts)
    body = got[0]["body"]
    assert (body["run_id"], body["status"], body["result"]) == (run.id, "done", result)
    assert body["event"]["type"] == "done" and body["event"]["output"] == result
    # the receiver answers before the deliverer records the answer: wait for the record to settle
    wait_for(lambda: (r := get_delivery(client, keys, run.id)) is not None and r.status != "pending", timeout=30,
             what="the delivery's record")
    d = get_delivery(client, keys, run.id)
    assert d is not None and (d.status, d.attempts, d.last_code) == ("delivered", 3, 204)

    # per workflow: the TOML's webhook is each run's default (no worker serves this workflow: cancel its run)
    toml = (ROOT / "agents/workflow/shipped/reviewed.toml").read_text()
    wf_file = tmp_path / "hooked.toml"
    wf_file.write_text(toml.replace('name = "reviewed"', f'name = "hooked"\nwebhook = "{receiver.url}/wf"'))
    with Client(settings=settings) as c:
        queued = c.submit("t", workflow=str(wf_file))
        assert queued.cancel() == "queued"
    got = wait_for(lambda: receiver.for_run(queued.id), timeout=120, what="the workflow's webhook", logs=workers.logs)
    assert got[0]["path"] == "/wf" and got[0]["signed"] and got[0]["body"]["status"] == "cancelled"


def test_cancelled_run_delivered_by_scheduler_that_survives_a_killed_deliverer(
        redis_url: str, client: redis.Redis, keys: Keys, worker_env: dict[str, str], receiver: Receiver) -> None:
    env = {**worker_env, "BATON_MODEL": "echo", "BATON_WEBHOOK_SECRET": SECRET, "BATON_WEBHOOK_ALLOW": "127.0.0.1",
           "BATON_WEBHOOK_TIMEOUT_S": "5"}

    def scheduler() -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-m", "baton", "scheduler", "--poll", "0.1"], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        assert p.stderr is not None and b"scheduler polling" in p.stderr.readline()
        return p

    with Client(settings=Settings(redis_url=redis_url, webhook_allow="127.0.0.1")) as c:
        run = c.submit("never served", webhook=receiver.url)  # no worker: it stays queued
    receiver.hang = 20.0  # the first attempt is held: its deliverer dies mid-request (before its 5 s timeout)
    first = scheduler()
    try:
        assert cancel_run(client, keys, run.id) == "queued"
        wait_for(lambda: receiver.for_run(run.id), timeout=60, what="the first attempt")
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    second = scheduler()
    try:
        got = wait_for(lambda: [r for r in receiver.for_run(run.id) if r["answered"]], timeout=90,
                       what="the delivery after the deliverer was killed")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=30) == 0
    assert got[0]["signed"] and got[0]["body"]["status"] == "cancelled"
    assert got[0]["body"]["event"]["type"] == "cancelled"
    # the killed attempt was never recorded: the delivery came back when its lease ran out, as attempt 1 again
    assert [r["attempt"] for r in receiver.for_run(run.id)] == [1, 1]


def test_failed_then_resent_and_refused_at_delivery(redis_url: str, client: redis.Redis, keys: Keys,
                                                    workers: Workers, receiver: Receiver) -> None:
    _hook_env(workers, BATON_WEBHOOK_RETRY_S="2")
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    workers.wait_ready(client)
    receiver.fail = 1000
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {
        "REDIS_URL": redis_url, "BATON_WEBHOOK_ALLOW": "127.0.0.1"}
    with Client(settings=Settings(redis_url=redis_url, webhook_allow="127.0.0.0/8")) as c:
        run = c.submit("Explain supervised learning.", webhook=receiver.url)
        # allowed where it was submitted, not by the workers' list (127.0.0.1 only): refused at delivery
        refused = c.submit("Explain supervised learning.", webhook=receiver.url.replace("127.0.0.1", "127.0.0.2"))
        wait_for(lambda: {d.run_id for d in c.failed_webhooks()} == {run.id, refused.id}, timeout=90,
                 what="both deliveries to fail", logs=workers.logs)
    assert len(receiver.for_run(run.id)) >= 2  # retried within the window, then failed
    bad = get_delivery(client, keys, refused.id)
    assert bad is not None and "not in BATON_WEBHOOK_ALLOW" in bad.last_error and bad.attempts == 0
    assert receiver.for_run(refused.id) == []
    listed = baton("webhooks", "failed", "--json", env=env)
    assert listed.returncode == 0 and run.id in listed.stdout and refused.id in listed.stdout
    receiver.fail = 0
    assert baton("webhooks", "resend", run.id, env=env).returncode == 0
    wait_for(lambda: [r for r in receiver.for_run(run.id) if r["answered"]], timeout=60, what="the re-sent delivery")
    wait_for(lambda: (d := get_delivery(client, keys, run.id)) is not None and d.status == "delivered", timeout=30)
    nosuch = baton("webhooks", "resend", "nosuch", env=env)
    assert nosuch.returncode != 0 and "no webhook delivery" in nosuch.stderr and "Traceback" not in nosuch.stderr
    with TestClient(create_app(Settings(redis_url=redis_url), SEED), base_url="http://localhost") as http:
        assert [d["run_id"] for d in http.get("/v1/webhooks/failed").json()["deliveries"]] == [refused.id]
        assert http.get(f"/v1/webhooks/{run.id}").json()["status"] == "delivered"
        assert http.post(f"/v1/webhooks/{refused.id}/resend").json()["status"] == "pending"


def test_disallowed_urls_refused_at_submit(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    with Client(settings=Settings(redis_url=redis_url, webhook_allow="127.0.0.1,*.example.com")) as c:
        for url, reason in [("http://10.0.0.1/h", "not in BATON_WEBHOOK_ALLOW"),
                            ("http://169.254.169.254/latest", "not in BATON_WEBHOOK_ALLOW"),
                            ("ftp://127.0.0.1/h", "http"), ("http://u:p@127.0.0.1/h", "credentials"),
                            ("http://evil.test/h", "evil.test (does not resolve|resolves to)")]:
            with pytest.raises(ProtocolError, match=reason):
                c.submit("t", webhook=url)
        assert c.runs() == []  # nothing was started
    with Client(settings=Settings(redis_url=redis_url)) as c, pytest.raises(ProtocolError, match="webhooks are off"):
        c.submit("t", webhook="http://127.0.0.1:9/h")
    assert check_url("https://hooks.example.com/x", "*.example.com") == "https://hooks.example.com/x"
    assert check_url("http://127.0.0.1:8080/x", "127.0.0.0/8") == "http://127.0.0.1:8080/x"
    with pytest.raises(ProtocolError, match="resolves to"):
        check_url("http://localhost/x", "public")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {
        "REDIS_URL": redis_url, "BATON_WEBHOOK_ALLOW": "127.0.0.1"}
    cli = baton("submit", "t", "--webhook", "http://10.1.2.3/h", env=env)
    assert cli.returncode != 0 and "Traceback" not in cli.stderr
    assert cli.stderr.strip().count("\n") == 0 and "not in BATON_WEBHOOK_ALLOW" in cli.stderr
    app = create_app(Settings(redis_url=redis_url, webhook_allow="127.0.0.1"), SEED)
    with TestClient(app, base_url="http://localhost") as http:
        answer = http.post("/v1/runs", json={"task": "t", "webhook": "http://192.168.1.1/h"})
        assert answer.status_code == 400 and "not in BATON_WEBHOOK_ALLOW" in answer.json()["detail"]
        assert http.post("/v1/runs", json={"task": "t", "webhook": "http://127.0.0.1:9/h"}).status_code == 201
