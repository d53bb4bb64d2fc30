"""Every submit path rides out a failover's refusals, then says so in one line (real processes).

A failover shows a submitter ``READONLY`` (the old primary, demoted), ``CLUSTERDOWN``,
``TRYAGAIN`` or ``MASTERDOWN`` for a few seconds. Here a private ``redis-server`` is made a replica
of a server that does not exist (``REPLICAOF``): it serves reads and refuses every write with
``READONLY``, as a demoted primary does, until ``REPLICAOF NO ONE``. Each submitter (the HTTP API
in a ``baton dashboard`` process, ``baton submit``, ``AsyncClient``, ``Client``) is started while
writes are refused; once Redis has refused one of its writes, writes are allowed again, and the
submit must return the run, written once. Past ``BATON_SUBMIT_RETRY_S`` the CLI fails in one line
and the API answers 503 with ``Retry-After``; with ``BATON_WAIT_REPLICAS`` on a server without
replicas, both say the run is not replicated (and submitting again with the key confirms it).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from baton import AsyncClient, Client
from baton.agents.settings import Settings
from baton.broker import EmbeddedRedis, Keys, free_port, get_run
from tests.cli import baton
from tests.conftest import ROOT
from tests.ops.conftest import dashboard_env
from tests.waiting import wait_for

TOKEN = "submit-outage-token-5d1e"


def _readonly_refusals(client: redis.Redis) -> int:
    return int(client.info("errorstats").get("errorstat_READONLY", {}).get("count", 0))


def _refuse_writes(client: redis.Redis) -> None:
    client.replicaof("127.0.0.1", free_port())  # a primary that never answers: a demoted node


@pytest.fixture
def dashboard(private_redis: EmbeddedRedis, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """``baton dashboard`` on the private Redis, submits retried for 60 s; its URL and log."""
    port = free_port()
    log_path = tmp_path / "dashboard.log"
    env = dashboard_env(private_redis.url, BATON_API_TOKENS=TOKEN, BATON_SUBMIT_RETRY_S="60")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)], env=env, cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def healthy() -> bool:
        assert proc.poll() is None, log_path.read_text()
        try:
            return httpx.get(f"{url}/healthz", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, 60, "the dashboard to start", interval=0.2)
        yield url, log_path
    finally:
        proc.terminate()
        proc.wait(10)


def _through_a_refusal(client: redis.Redis, submit: Callable[[], str]) -> str:
    """Refuse writes, run ``submit`` in a thread, allow writes once Redis refused it; its run id."""
    _refuse_writes(client)
    before = _readonly_refusals(client)
    out: list[Any] = []

    def go() -> None:
        try:
            out.append(submit())
        except BaseException as exc:  # noqa: BLE001 - the test reports it
            out.append(exc)

    thread = threading.Thread(target=go, daemon=True)
    thread.start()
    try:
        wait_for(lambda: _readonly_refusals(client) > before or bool(out), 90, "Redis to refuse the submit")
        assert not out, f"the submit ended while writes were refused: {out}"
    finally:
        client.replicaof("no", "one")
    thread.join(120)
    (got,) = out
    assert isinstance(got, str), got
    return got


def test_api_cli_async_and_sync_clients_ride_out_readonly(
    private_redis: EmbeddedRedis, private_client: redis.Redis, dashboard: tuple[str, Path]
) -> None:
    url, _ = dashboard
    env = dashboard_env(private_redis.url, BATON_SUBMIT_RETRY_S="60")
    settings = Settings.from_env(env)
    headers = {"Authorization": f"Bearer {TOKEN}"}

    def api() -> str:
        resp = httpx.post(f"{url}/v1/runs", json={"task": "through the API"}, headers=headers, timeout=90)
        assert resp.status_code == 201, resp.text
        return str(resp.json()["run_id"])

    def cli() -> str:
        done = baton("submit", "through the CLI", env=env, timeout=120)
        assert done.returncode == 0, done.stderr
        return done.stdout.strip().splitlines()[-1]

    def aio() -> str:
        async def go() -> str:
            async with AsyncClient(settings=settings) as c:
                return (await c.submit("through the async client")).id
        return asyncio.run(go())

    def sync() -> str:
        with Client(settings=settings) as c:
            return c.submit("through the client").id

    keys = Keys()
    for name, submit in [("api", api), ("cli", cli), ("async", aio), ("sync", sync)]:
        run_id = _through_a_refusal(private_client, submit)
        record = get_run(private_client, keys, run_id) or {}
        assert record.get("status") == "queued", (name, record)
        entries = private_client.xrange(keys.run_stream("seed", "planner", run_id))
        assert sum(run_id.encode() in f[b"msg"] for _, f in entries) == 1, name  # written once


def test_past_the_retry_limit_the_cli_fails_in_one_line_and_the_api_answers_503(
    private_redis: EmbeddedRedis, private_client: redis.Redis, tmp_path: Path
) -> None:
    env = dashboard_env(private_redis.url, BATON_SUBMIT_RETRY_S="1")
    port = free_port()
    with open(tmp_path / "dashboard.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)],
                                env={**env, "BATON_API_TOKENS": TOKEN}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard to start", interval=0.2)
        _refuse_writes(private_client)
        done = baton("submit", "refused", env=env)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
        assert done.stderr.count("\n") == 1 and "read only replica" in done.stderr.lower(), done.stderr
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/runs", json={"task": "refused"},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1", resp.text
        assert "Redis is unavailable" in resp.json()["detail"]
    finally:
        private_client.replicaof("no", "one")
        proc.terminate()
        proc.wait(10)
    assert private_client.xlen(Keys().stream("seed", "planner")) == 0  # nothing half-written


def test_wait_replicas_without_replicas_is_one_line_in_the_cli_and_503_in_the_api(
    private_redis: EmbeddedRedis, private_client: redis.Redis, tmp_path: Path
) -> None:
    env = dashboard_env(private_redis.url, BATON_WAIT_REPLICAS="1", BATON_WAIT_TIMEOUT_MS="200")
    done = baton("submit", "unreplicated", "--idempotency-key", "k-cli", env=env)
    assert done.returncode == 1 and done.stderr.count("\n") == 1, done.stderr
    assert "is on 0 of 1 replicas" in done.stderr and "same idempotency key" in done.stderr
    again = baton("submit", "unreplicated", "--idempotency-key", "k-cli", env=env)
    assert again.returncode == 1 and again.stderr == done.stderr  # the same run, confirmed again, not re-written
    assert private_client.xlen(Keys().stream("seed", "planner")) == 1

    port = free_port()
    with open(tmp_path / "wait-dashboard.log", "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)],
                                env={**env, "BATON_API_TOKENS": TOKEN}, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _up(f"http://127.0.0.1:{port}/healthz"), 60, "the dashboard to start", interval=0.2)
        resp = httpx.post(f"http://127.0.0.1:{port}/v1/runs", json={"task": "unreplicated"},
                          headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
        assert resp.status_code == 503 and resp.headers["Retry-After"] == "1", resp.text
        assert "is on 0 of 1 replicas" in resp.json()["detail"]
    finally:
        proc.terminate()
        proc.wait(10)


def _up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False
