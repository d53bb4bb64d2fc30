"""What a browser on another origin, a DNS-rebinding page or a slow or nosy client must not get from a real
``baton dashboard`` subprocess (issue: hardening of the dashboard and HTTP API)."""

from __future__ import annotations

import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import httpx
import pytest
import redis

from baton.agents.ops.slots import MAX_STREAMS_PER_CLIENT
from baton.broker import EmbeddedRedis, Keys, free_port
from tests.conftest import ROOT
from tests.ops.conftest import TOKENS, Server, dashboard_env
from tests.waiting import wait_for


@contextmanager
def _dashboard(redis_url: str, log_path: Path, **env: str) -> Iterator[Server]:
    """``baton dashboard`` on a free port of 127.0.0.1 with ``env``, until the block ends."""
    port = free_port()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)],
                                env=dashboard_env(redis_url, **env), cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
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


@pytest.fixture(scope="module")
def open_server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``baton dashboard`` without tokens on 127.0.0.1 (the default of a developer's machine)."""
    with _dashboard(redis_server.url, tmp_path_factory.mktemp("open") / "dashboard.log") as srv:
        yield srv


@pytest.fixture(scope="module")
def tight(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``baton dashboard`` with tokens and 2 s header and body timeouts."""
    with _dashboard(redis_server.url, tmp_path_factory.mktemp("tight") / "dashboard.log",
                    BATON_API_TOKENS=TOKENS[0], BATON_HTTP_HEADER_TIMEOUT_S="2", BATON_HTTP_BODY_TIMEOUT_S="2") as srv:
        yield srv


def test_writes_must_be_json_from_this_origin(server: Server, client: redis.Redis, keys: Keys) -> None:
    entry = keys.stream("seed", "planner")
    before = client.xlen(entry)
    with server.http() as http:
        plain = http.post("/v1/runs", content=b'{"task": "as text"}', headers={"Content-Type": "text/plain"})
        assert plain.status_code == 415, plain.text
        form = http.post("/v1/runs", content=b'{"task": "as a form"}',
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
            assert http.get("/v1/runs", headers={"Host": host}).status_code == 200, host
    assert client.xlen(keys.stream("seed", "planner")) == 0


def test_page_and_api_send_frame_sniff_and_content_policies(server: Server) -> None:
    with server.http() as http:
        for path in ("/", "/v1/runs", "/healthz"):
            got = http.get(path)
            assert got.headers["x-frame-options"] == "DENY", path
            assert got.headers["x-content-type-options"] == "nosniff", path
            csp = got.headers["content-security-policy"]
            assert "frame-ancestors 'none'" in csp and "script-src 'sha256-" in csp and "unsafe-eval" not in csp


def _submitted(http: httpx.Client) -> str:
    created = http.post("/v1/runs", json={"task": "watch me"})
    assert created.status_code == 201, created.text
    run_id: str = created.json()["run_id"]
    return run_id


def test_event_ids_out_of_range_get_422_without_a_traceback(tight: Server) -> None:
    with tight.http() as http:
        run_id = _submitted(http)
        for cursor in ("18446744073709551616-0", "99999999999999999999", "1-18446744073709551616",
                       "123456789012345678901-0"):
            assert http.get(f"/v1/runs/{run_id}/events", params={"after": cursor}).status_code == 422, cursor
            got = http.get(f"/v1/runs/{run_id}/events", headers={"Last-Event-ID": cursor})
            assert got.status_code == 422 and "bad event id" in got.json()["detail"], cursor
        with http.stream("GET", f"/v1/runs/{run_id}/events", params={"after": "18446744073709551615-0"}) as ok:
            assert ok.status_code == 200  # the largest id there is: nothing after it yet
    assert "Traceback" not in tight.log.read_text()


def test_the_query_token_opens_event_streams_only(tight: Server) -> None:
    with tight.http() as http:
        run_id = _submitted(http)
    sse = {"Accept": "text/event-stream"}
    with httpx.Client(base_url=tight.url, timeout=30) as anon:
        query = {"access_token": TOKENS[0]}
        for path in ("/v1/runs", f"/v1/runs/{run_id}", "/api/snapshot", "/api/dead"):
            assert anon.get(path, params=query, headers=sse).status_code == 401, path
        for path in (f"/v1/runs/{run_id}/events", "/api/events"):
            with anon.stream("GET", path, params=query, headers=sse) as stream:
                assert stream.status_code == 200, path


def test_one_client_holds_a_bounded_number_of_event_streams(tight: Server) -> None:
    with tight.http() as http:
        run_id = _submitted(http)
    limits = httpx.Limits(max_connections=MAX_STREAMS_PER_CLIENT + 4)
    with tight.http() as http, httpx.Client(base_url=tight.url, limits=limits, timeout=30,
                                            headers={"Authorization": f"Bearer {TOKENS[0]}"}) as many:
        with ExitStack() as stack:
            for _ in range(MAX_STREAMS_PER_CLIENT):
                assert stack.enter_context(many.stream("GET", f"/v1/runs/{run_id}/events")).status_code == 200
            over = http.get(f"/v1/runs/{run_id}/events")
            assert over.status_code == 429 and over.headers["retry-after"]
            assert http.get("/api/events").status_code == 429
        wait_for(lambda: _one_stream_opens(tight, run_id), 30, "a closed stream's place to be given back")


def _one_stream_opens(srv: Server, run_id: str) -> bool:
    with srv.http() as http, http.stream("GET", f"/v1/runs/{run_id}/events") as stream:
        return stream.status_code == 200


def _raw(srv: Server, data: bytes) -> bytes:
    """Send ``data`` and never the rest: what the server answers before it closes the connection."""
    host, port = srv.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=60) as sock:
        sock.sendall(data)
        reply = b""
        while chunk := sock.recv(65536):
            reply += chunk
    return reply


def test_half_sent_headers_and_bodies_time_out_with_408(tight: Server) -> None:
    assert _raw(tight, b"GET /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ").startswith(b"HTTP/1.1 408")
    assert _raw(tight, b"GE").startswith(b"HTTP/1.1 408")
    body = (b"POST /v1/runs HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer " + TOKENS[0].encode() + b"\r\nContent-Length: 100\r\n\r\n{\"task\": ")
    reply = _raw(tight, body)
    assert reply.startswith(b"HTTP/1.1 408") and b"took over 2 s" in reply


def test_schedule_routes_refuse_requests_without_a_token(tight: Server) -> None:
    body = {"name": "nightly", "cron": "0 3 * * *", "workflow": "seed", "task": "report"}
    with httpx.Client(base_url=tight.url, timeout=30) as anon:
        assert anon.post("/v1/schedules", json=body).status_code == 401
        assert anon.get("/v1/schedules").status_code == 401
        assert anon.post("/v1/schedules/nightly/pause").status_code == 401
        assert anon.delete("/v1/schedules/nightly").status_code == 401
