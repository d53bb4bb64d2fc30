"""Idempotent submits: one key, one run, however the submits arrive (client, asyncio client, HTTP API,
CLI) and even when they race from threads and from separate processes; against a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis
from fastapi.testclient import TestClient

from baton import Client
from baton.agents.ops.dashboard import create_app
from baton.agents.settings import Settings
from baton.agents.workflow import SEED
from baton.aio import AsyncClient
from baton.broker import Keys, list_runs
from baton.protocol import ProtocolError
from tests.cli import baton
from tests.conftest import ROOT


def _entries(client: redis.Redis, keys: Keys) -> int:
    return int(client.xlen(keys.run_stream(SEED.name, SEED.entry, "x")))


def _runs(client: redis.Redis, keys: Keys) -> list[str]:
    return list_runs(client, keys, 1000)


def test_same_key_same_run_on_every_path(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    settings = Settings(redis_url=redis_url)
    with Client(settings=settings) as c:
        first = c.submit("Explain supervised learning.", idempotency_key="order-1").id
        assert c.submit("Explain supervised learning.", idempotency_key="order-1").id == first
        other = c.submit("Explain supervised learning.", idempotency_key="order-2").id
        assert other != first

    async def via_async() -> str:
        async with AsyncClient(redis_url) as ac:
            return (await ac.submit("Explain supervised learning.", idempotency_key="order-1")).id

    assert asyncio.run(via_async()) == first
    with TestClient(create_app(settings, SEED), base_url="http://localhost") as http:
        again = http.post("/v1/runs", json={"task": "Explain supervised learning."},
                          headers={"Idempotency-Key": "order-1"})
        assert again.status_code == 201 and again.json()["run_id"] == first
        fresh = http.post("/v1/runs", json={"task": "Explain supervised learning."})
        assert fresh.json()["run_id"] not in (first, other)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {"REDIS_URL": redis_url}
    done = baton("submit", "--idempotency-key", "order-1", "Explain supervised learning.", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == first
    assert sorted(_runs(client, keys)) == sorted({first, other, fresh.json()["run_id"]})
    assert _entries(client, keys) == 3  # one first task per run started, none for the repeats


def test_racing_threads_start_one_run(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    settings = Settings(redis_url=redis_url)
    clients = [Client(settings=settings) for _ in range(16)]
    try:
        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(lambda c: c.submit("race", idempotency_key="retry-me").id, clients))
    finally:
        for c in clients:
            c.close()
    assert len(set(ids)) == 1
    assert _runs(client, keys) == [ids[0]]
    assert _entries(client, keys) == 1


_RACER = """
import sys
from baton import Client
with Client(sys.argv[1]) as c:
    sys.stdin.readline()  # start together
    print(c.submit("race", idempotency_key="proc-key").id, flush=True)
"""


def test_racing_processes_start_one_run(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, redis_url], cwd=ROOT, env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE) for _ in range(6)]
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    ids = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(ids)) == 1 and ids[0]
    assert _runs(client, keys) == [ids[0]]
    assert _entries(client, keys) == 1


def test_failed_submit_releases_its_key(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    with Client(settings=Settings(redis_url=redis_url)) as c:
        with pytest.raises(ProtocolError):
            c.submit("bad lane", idempotency_key="k", priority="nope")  # type: ignore[arg-type]
        assert _runs(client, keys) == []
        run_id = c.submit("good", idempotency_key="k").id
        assert c.submit("good", idempotency_key="k").id == run_id
        with pytest.raises(ProtocolError, match="idempotency key"):
            c.submit("x", idempotency_key="")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")} | {"REDIS_URL": redis_url}
    done = baton("submit", "--idempotency-key", "k" * 300, "x", env=env)
    assert done.returncode != 0 and "idempotency key" in done.stderr and "Traceback" not in done.stderr


def test_key_kept_as_long_as_run_records(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    with Client(settings=Settings(redis_url=redis_url, record_ttl_s=120)) as c:
        c.submit("t", idempotency_key="ttl")
    assert 0 < int(client.ttl(keys.idempotency("ttl"))) <= 120
