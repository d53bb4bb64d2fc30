"""What a browser on another origin, a DNS-rebinding page or a slow or nosy client must not get from a real
``baton dashboard`` subprocess (issue: hardening of the dashboard and HTTP API)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import httpx
import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, free_port
from tests.conftest import ROOT
from tests.ops.conftest import Server, dashboard_env
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def open_server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``baton dashboard`` without tokens on 127.0.0.1 (the default of a developer's machine)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("open") / "dashboard.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)],
                                env=dashboard_env(redis_server.url), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    srv = Server(f"http://127.0.0.1:{port}", log_path)

    def healthy() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{srv.url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "the dashboard to start", interval=0.2)
        yield srv
    finally:
        proc.terminate()
        proc.wait(10)


def test_writes_must_be_json_from_this_origin(server: Server, client: redis.Redis, keys: Keys) -> None:
    entry = keys.stream("seed", "planner")
    before = client.xlen(entry)
    with server.http() as http:
        plain = http.post("/v1/runs", content=b'{"task": "as text"}', headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415, plain.text
        form = http.post("/api/runs", content=b'{"task": "as a form"}',
                         headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert form.status_code == 415
        bare = http.post("/v1/runs", content=b'{"task": "no type"}', headers={"Content-Type": ""})
        assert bare.status_code == 415
        elsewhere = http.post("/v1/runs", json={"task": "from elsewhere"}, headers={"Origin": "http://evil.test"})
        assert elsewhere.status_code == 403 and "cross-origin" in elsewhere.json()["detail"]
        sandboxed = http.post("/v1/runs/any/cancel", headers={"Origin": "null"})
        assert sandboxed.status_code == 403
        assert client.xlen(entry) == before
        same = http.post("/v1/runs", json={"task": "from the page"}, headers={"Origin": server.url})
        assert same.status_code == 201, same.text
        assert http.post("/v1/runs", json={"task": "from a script"}).status_code == 201  # no Origin: not a browser
    assert client.xlen(entry) == before + 2


def test_without_tokens_only_loopback_host_names_are_served(open_server: Server, client: redis.Redis,
                                                           keys: Keys) -> None:
    port = open_server.url.rsplit(":", 1)[1]
    with open_server.http(token=None) as http:
        for host in ("rebind.test", f"rebind.test:{port}", f"10.0.0.5:{port}", f"127.0.0.1.nip.io:{port}"):
            got = http.get("/", headers={"Host": host})
            assert got.status_code == 400, (host, got.status_code)
            posted = http.post("/v1/runs", json={"task": "rebound"}, headers={"Host": host})
            assert posted.status_code == 400 and "BATON_ALLOWED_HOSTS" in posted.json()["detail"]
        for host in (f"localhost:{port}", f"127.0.0.1:{port}", f"app.localhost:{port}", f"[::1]:{port}"):
            assert http.get("/api/runs", headers={"Host": host}).status_code == 200, host
    assert client.xlen(keys.stream("seed", "planner")) == 0


def test_page_and_api_send_frame_sniff_and_content_policies(server: Server) -> None:
    with server.http() as http:
        for path in ("/", "/v1/runs", "/healthz"):
            got = http.get(path)
            assert got.headers["x-frame-options"] == "DENY", path
            assert got.headers["x-content-type-options"] == "nosniff", path
            csp = got.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-eval" not in csp
