"""Idempotent submits: one key, one run, however the submits arrive (client, asyncio client, HTTP API,
CLI) and even when they race from threads and from separate processes; against a real Redis."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
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


def test_racing_turns_of_a_thread_start_one_run(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    """The key is set inside the thread's submit step: racing turns with one key start one run, and a
    rejected turn leaves no key (its retry starts the run once the thread is free)."""
    settings = Settings(redis_url=redis_url)
    clients = [Client(settings=settings) for _ in range(12)]
    try:
        with ThreadPoolExecutor(12) as pool:
            ids = list(pool.map(lambda c: c.submit("turn", thread="chat", idempotency_key="turn-1").id, clients))
        assert len(set(ids)) == 1
        assert _runs(client, keys) == [ids[0]]
        assert client.lrange(keys.thread("chat") + ":queue", 0, -1) == []  # no second turn queued
        with pytest.raises(Exception, match="reject"):
            clients[0].submit("turn", thread="chat", thread_policy="reject", idempotency_key="turn-2")
        assert client.get(keys.idempotency("turn-2", keys.thread_partition("chat"))) is None
    finally:
        for c in clients:
            c.close()


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
    assert 0 < int(client.ttl(keys.idempotency("ttl", keys.partition("ttl")))) <= 120


_SUBMITTER = """
import sys
from baton import Client
with Client(sys.argv[1]) as c:
    print("ready", flush=True)
    i = 0
    while True:  # fresh keys, as fast as it can, until it is killed; every other one a thread's turn
        thread = f"t-{sys.argv[2]}-{i}" if i % 2 else None
        c.submit("crash", idempotency_key=f"{sys.argv[2]}-{i}", thread=thread)
        i += 1
"""


def test_a_submitter_killed_anywhere_leaves_no_key_without_its_run(
    redis_url: str, client: redis.Redis, keys: Keys
) -> None:
    """SIGKILL a process that submits with idempotency keys at arbitrary points, ten times: every key
    left in Redis names a run that exists (the key and its run are one atomic write; the old
    claim-then-write left keys naming runs that never existed), and every run has its key."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    for n in range(10):
        proc = subprocess.Popen([sys.executable, "-c", _SUBMITTER, redis_url, f"k{n}"], cwd=ROOT, env=env,
                                text=True, stdout=subprocess.PIPE)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        time.sleep(0.3 + 0.07 * n)  # (a different point of the loop each time)
        proc.kill()
        proc.wait(30)
    stored = {k: client.get(k) for k in client.scan_iter(match="*:idem:*")}
    assert len(stored) > 10  # the submitters got going
    dangling = {k: v for k, v in stored.items() if v is None or not client.exists(keys.run(v.decode()))}
    assert dangling == {}
    assert sorted(v.decode() for v in stored.values()) == sorted(list_runs(client, keys, 10**6))  # each run has its key


def test_a_key_stored_by_an_older_version_still_names_its_run(redis_url: str, client: redis.Redis,
                                                               keys: Keys) -> None:
    """Before keys moved into their run's slot they were ``<prefix>:idem:<sha256>``: a submit retried
    across the upgrade gets that run back and starts nothing."""
    with Client(settings=Settings(redis_url=redis_url)) as c:
        first = c.submit("before the upgrade").id
        client.set(keys.legacy_idempotency("old-key"), first)
        assert c.submit("before the upgrade", idempotency_key="old-key").id == first
    assert _runs(client, keys) == [first]
