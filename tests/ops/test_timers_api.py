"""Signals and parked runs over the HTTP API, the Python clients and the CLI, against a real dashboard
process, real workers of a code role and a real Redis (the dashboard's view of them:
``tests/ops/test_dashboard.py``)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import redis

from baton import AsyncClient, Client, RunEnded, RunNotFound
from baton.broker import Keys, cancel_run, get_run, submit
from baton.protocol import Task
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.ops.conftest import Server
from tests.waiting import wait_for

APP = "tests.e2e.waitapps:timers"
FAST = {"BATON_MODEL": "echo", "BATON_RECLAIM_INTERVAL_S": "0.2"}


def _task(run_id: str, role: str = "approver", task: str = "t") -> Task:
    return Task(run_id=run_id, role=role, task=task, workflow="timers")


def test_signal_route_authenticates_before_the_body_and_answers_404_409_422(
    server: Server, client: redis.Redis, keys: Keys
) -> None:
    with server.http(token=None) as anon:
        too_big = "x" * (4 * 1024 * 1024)  # over the body cap: refused as 401 unread, not 413
        res = anon.post("/v1/runs/any/signal", content=too_big, headers={"Content-Type": "application/json"})
        assert res.status_code == 401, res.text
        assert anon.get("/v1/waits").status_code == 401
    with server.http() as http:
        assert http.post("/v1/runs/nope/signal", json={"name": "go"}).status_code == 404
        run_id = submit(client, keys, _task("api-buffered"))  # no worker: it stays queued
        assert http.post(f"/v1/runs/{run_id}/signal", json={"name": "bad name!"}).status_code == 422
        assert http.post(f"/v1/runs/{run_id}/signal", json={"name": "go", "extra": 1}).status_code == 422
        res = http.post(f"/v1/runs/{run_id}/signal", json={"name": "approval", "data": {"by": "api", "ok": 1}})
        assert res.status_code == 202 and res.json() == {"run_id": run_id, "name": "approval", "delivered": False}
        assert client.lrange(keys.signals(run_id, "approval"), 0, -1) == [b'{"by":"api","ok":1}']  # kept
        cancel_run(client, keys, run_id)
        res = http.post(f"/v1/runs/{run_id}/signal", json={"name": "approval"})
        assert res.status_code == 409 and "has ended (cancelled)" in res.json()["detail"]


def test_clients_and_cli_signal_waiting_runs_and_list_them(
    server: Server, client: redis.Redis, keys: Keys, workers: Workers, redis_url: str, tmp_path: Path
) -> None:
    workers.spawn("approver", "--app", APP, env={**FAST, "BATON_TEST_FILE": str(tmp_path / "notes")})
    run_ids = [submit(client, keys, _task(f"sig-{i}", task=f"doc{i}")) for i in range(4)]
    wait_for(lambda: all((get_run(client, keys, r) or {}).get("status") == "waiting" for r in run_ids),
             what="four runs waiting for approval", logs=workers.logs)
    with server.http() as http:
        waits = http.get("/v1/waits").json()["waits"]
        assert {w["run_id"] for w in waits} == set(run_ids)
        assert all(w["kind"] == "signal" and w["name"] == "approval" and w["until"] is None for w in waits)
        res = http.post(f"/v1/runs/{run_ids[0]}/signal", json={"name": "approval", "data": {"by": "http", "ok": 1}})
        assert res.json()["delivered"] is True
    with Client(redis_url) as sync:
        assert sync.signal(run_ids[1], "approval", {"by": "client", "ok": 2}) is True
        with pytest.raises(RunNotFound):
            sync.signal("no-such-run", "approval")

    async def via_async() -> bool:
        async with AsyncClient(redis_url) as aio:
            return await aio.signal(run_ids[2], "approval", {"by": "aio", "ok": 3})

    assert asyncio.run(via_async()) is True
    env = {"REDIS_URL": redis_url}
    done = baton("signal", run_ids[3], "approval", "--data", json.dumps({"by": "cli", "ok": 4}), env=env)
    assert done.returncode == 0 and f"delivered to run {run_ids[3]}" in done.stdout, done.stderr
    bad = baton("signal", run_ids[3], "approval", "--data", "{oops", env=env)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "not JSON" in bad.stderr
    recs = wait_runs(client, keys, run_ids)
    assert [recs[r]["result"] for r in run_ids] == [f"doc{i}: {who} said {i + 1}"
                                                   for i, who in enumerate(("http", "client", "aio", "cli"))]
    shown = baton("events", run_ids[3], env=env).stdout
    assert "waiting" in shown and "signal approval" in shown and "(signal)" in shown, shown
    ended = baton("signal", run_ids[0], "approval", env=env)
    assert ended.returncode == 1 and "has ended (done)" in ended.stderr and "Traceback" not in ended.stderr
    with Client(redis_url) as sync, pytest.raises(RunEnded):
        sync.signal(run_ids[0], "approval")
