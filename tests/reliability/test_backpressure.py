"""Backpressure: a submit is refused, with a reason and a Retry-After, while the entry role's backlog
is at ``BATON_MAX_BACKLOG`` or Redis is at ``maxmemory``; through the client, the HTTP API (a real
``baton dashboard`` subprocess) and the CLI (a subprocess); real Redis, echo workers in their own
processes. Nothing accepted is lost."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import redis

import baton
from baton import Client, Settings
from baton.broker import EmbeddedRedis, Keys, free_port, get_run
from baton.broker.backpressure import read_backlog
from tests.cli import baton as baton_cli
from tests.conftest import ROOT, Workers
from tests.ops.conftest import TOKENS, Server, dashboard_env
from tests.waiting import wait_for

LIMIT = 3


@contextmanager
def dashboard(redis_url: str, log_dir: Path, **env: str) -> Iterator[Server]:
    """A ``baton dashboard`` subprocess on ``redis_url`` with ``TOKENS`` and ``env``."""
    port = free_port()
    log_path = log_dir / "dashboard.log"
    full_env = dashboard_env(redis_url, BATON_API_TOKENS=",".join(TOKENS), **env)
    with open(log_path, "wb") as log:  # the child keeps its copy
        proc = subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)],
                                env=full_env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
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


def _status(client: redis.Redis, keys: Keys, run_id: str) -> str:
    return (get_run(client, keys, run_id) or {}).get("status", "")


def _one_line_error(result: subprocess.CompletedProcess[str], *phrases: str) -> str:
    assert result.returncode != 0, result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for phrase in phrases:
        assert phrase in lines[0], lines[0]
    return lines[0]


def test_submits_past_the_backlog_limit_are_refused_until_a_worker_drains(
    redis_url: str, client: redis.Redis, keys: Keys, echo: Workers, tmp_path: Path
) -> None:
    settings = Settings.from_env({}, redis_url=redis_url, max_backlog=LIMIT)
    env = {**echo.env, "BATON_MAX_BACKLOG": str(LIMIT)}
    with Client(settings=settings) as c, dashboard(redis_url, tmp_path, BATON_MAX_BACKLOG=str(LIMIT)) as srv, \
            srv.http() as http:
        accepted = [c.submit(f"task {i}").id for i in range(LIMIT)]
        assert read_backlog(client, keys, "seed", "planner").backlog == LIMIT

        with pytest.raises(baton.BacklogFull) as refused:
            c.submit("one too many")
        assert isinstance(refused.value, baton.SubmitRefused)
        assert (refused.value.role, refused.value.backlog, refused.value.limit) == ("planner", LIMIT, LIMIT)
        assert 1 <= refused.value.retry_after_s <= 60
        assert "planner" in str(refused.value) and "limit 3" in str(refused.value)

        answer = http.post("/v1/runs", json={"task": "one too many"})
        assert answer.status_code == 429, answer.text
        assert int(answer.headers["Retry-After"]) >= 1
        assert "limit 3" in answer.json()["detail"]

        _one_line_error(baton_cli("submit", "one too many", env=env), "planner", "limit 3", "retry in")
        assert read_backlog(client, keys, "seed", "planner").backlog == LIMIT  # nothing refused was written

        echo.spawn("planner")
        wait_for(lambda: read_backlog(client, keys, "seed", "planner").backlog == 0, what="the planner to drain",
                 logs=echo.logs)
        accepted.append(c.submit("after the drain").id)
        created = http.post("/v1/runs", json={"task": "after the drain"})
        assert created.status_code == 201, created.text
        accepted.append(created.json()["run_id"])
        cli = baton_cli("submit", "after the drain", env=env)
        assert cli.returncode == 0, cli.stderr
        accepted.append(cli.stdout.strip())
        for role in ("researcher", "summarizer"):
            echo.spawn(role)
        wait_for(lambda: all(_status(client, keys, r) == "done" for r in accepted), what="every accepted run",
                 logs=echo.logs)


def test_a_workflows_entry_role_limit_overrides_the_fleet_limit(
    redis_url: str, client: redis.Redis, keys: Keys, tmp_path: Path
) -> None:
    def workflow(limit: int) -> str:
        path = tmp_path / f"limited-{limit}.toml"
        path.write_text(f'name = "limited{limit}"\nentry = "intake"\n\n[[roles]]\nrole = "intake"\nagent = "Ann"\n'
                        f"max_backlog = {limit}\n")
        return str(path)

    with Client(settings=Settings.from_env({}, redis_url=redis_url, max_backlog=LIMIT)) as c:
        one = workflow(1)
        c.submit("first", workflow=one)
        with pytest.raises(baton.BacklogFull) as refused:
            c.submit("second", workflow=one)
        assert refused.value.limit == 1
        unlimited = workflow(0)
        for i in range(LIMIT + 2):
            c.submit(f"task {i}", workflow=unlimited)
        assert read_backlog(client, keys, "limited0", "intake").backlog == LIMIT + 2


def test_a_full_redis_refuses_submits_and_keeps_every_accepted_run(
    private_redis: EmbeddedRedis, private_client: redis.Redis, echo: Workers, tmp_path: Path
) -> None:
    keys = Keys()
    echo.env.update({"REDIS_URL": private_redis.url, "BATON_MAX_DELIVERIES": "1"})
    procs = [echo.spawn(role) for role in ("planner", "researcher", "summarizer")]
    echo.wait_ready(private_client)
    accepted: list[str] = []
    with Client(private_redis.url) as c, dashboard(private_redis.url, tmp_path) as srv, srv.http() as http:
        used = int(private_client.info("memory")["used_memory"])
        private_client.config_set("maxmemory-policy", "noeviction")
        private_client.config_set("maxmemory", used + 256 * 1024)
        with pytest.raises(baton.RedisFull) as refused:
            for i in range(1000):
                accepted.append(c.submit(f"task {i} " + "x" * 400).id)
        assert accepted and "out of memory" in str(refused.value) and refused.value.retry_after_s >= 1
        # the workers go on finishing runs, which can free a little room (a fresh-clone CI once got a 201
        # below): from here Redis stays full whatever they free
        private_client.config_set("maxmemory", int(private_client.info("memory")["used_memory"]) // 2)

        answer = http.post("/v1/runs", json={"task": "no room"})
        assert answer.status_code == 503, answer.text
        assert int(answer.headers["Retry-After"]) >= 1 and "out of memory" in answer.json()["detail"]
        _one_line_error(baton_cli("submit", "no room", env=echo.env), "out of memory", "retry in")
        wait_for(lambda: echo.logged("waits for Redis"), what="a worker to wait on Redis", logs=echo.logs)
        assert [p.poll() for p in procs] == [None, None, None], echo.logs()

        private_client.config_set("maxmemory", 0)
        accepted.append(c.submit("after the outage").id)
        wait_for(lambda: all(_status(private_client, keys, r) in {"done", "failed"} for r in accepted),
                 what="every accepted run to end", logs=echo.logs)
    assert [r for r in accepted if _status(private_client, keys, r) != "done"] == []
    assert private_client.xlen(keys.dead()) == 0
    assert [p.poll() for p in procs] == [None, None, None], echo.logs()
