"""Priority lanes end to end: real Redis, worker processes with the echo model, the CLI, the
client and the HTTP API submitting ``interactive`` and ``batch`` runs."""

from __future__ import annotations

import asyncio

import pytest
import redis

from baton import AsyncClient, Client
from baton.broker import Keys, submit
from baton.broker.streams import entry_id_key
from baton.protocol import PRIORITIES, ProtocolError, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")


def _start(workers: Workers, client: redis.Redis, roles: tuple[str, ...] = ROLES, **env: str) -> None:
    workers.env.update({"BATON_MODEL": "echo", **env})
    for role in roles:
        workers.spawn(role)
    workers.wait_ready(client)


def _backlog(client: redis.Redis, keys: Keys, prefix: str, count: int, priority: str) -> list[str]:
    ids = [f"{prefix}{i}" for i in range(count)]
    for run_id in ids:
        submit(client, keys, Task(run_id=run_id, role="planner", task=f"task {run_id}", priority=priority))  # type: ignore[arg-type]
    return ids


def _finished_at(client: redis.Redis, keys: Keys, run_ids: list[str]) -> list[float]:
    return [float(client.hget(keys.run(r), "finished_at") or 0) for r in run_ids]


def test_a_batch_run_stays_in_the_batch_lane_through_every_role(client: redis.Redis, keys: Keys,
                                                               workers: Workers, redis_url: str) -> None:
    _start(workers, client)
    with Client(redis_url) as c:
        run = c.submit("Explain the importance of supervised learning.", priority="batch")
        assert run.wait(timeout=60).endswith("[echo]")
        assert run.record().priority == "batch"
    for role in ROLES:
        batch = client.xrange(keys.stream("seed", role, 0, "batch"))
        assert len(batch) == 1 and client.xlen(keys.stream("seed", role)) == 0, role
        task = decode(batch[0][1][b"msg"])
        assert isinstance(task, Task) and task.priority == "batch" and task.run_id == run.id
        assert client.xpending(keys.stream("seed", role, 0, "batch"), role)["pending"] == 0


def test_interactive_runs_overtake_a_batch_backlog(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    backlog = _backlog(client, keys, "b", 300, "batch")
    _start(workers, client, BATON_ECHO_DELAY_S="0.05", BATON_BATCH_SIZE="2")
    urgent = _backlog(client, keys, "i", 10, "interactive")
    wait_runs(client, keys, urgent, timeout=120)
    last_urgent = max(_finished_at(client, keys, urgent))
    overtaken = sum(0 < t < last_urgent for t in _finished_at(client, keys, backlog))
    assert overtaken < len(backlog) // 2, f"{overtaken} of {len(backlog)} batch runs finished first"
    wait_runs(client, keys, backlog, timeout=300)  # and the backlog finishes too


def test_batch_work_keeps_its_share_while_interactive_work_flows(client: redis.Redis, keys: Keys,
                                                                workers: Workers) -> None:
    _backlog(client, keys, "b", 60, "batch")
    _backlog(client, keys, "i", 200, "interactive")
    _start(workers, client, ("planner",), BATON_BATCH_SIZE="4", BATON_BATCH_SHARE="0.1")
    handed = keys.lane_streams("seed", "researcher")
    wait_for(lambda: sum(client.xlen(s) for s in handed) == 260, 120, "the planner to hand everything on",
             logs=workers.logs)
    rows = [(entry_id_key(i.decode()), lane) for lane, s in zip(PRIORITIES, handed, strict=True)
            for i, _ in client.xrange(s)]
    order = [lane for _, lane in sorted(rows)]  # the order the planner handed tasks on
    last_urgent = max(i for i, lane in enumerate(order) if lane == "interactive")
    batch_meanwhile = order[:last_urgent].count("batch")
    assert batch_meanwhile >= 10, f"only {batch_meanwhile} batch tasks handed on while interactive work waited"
    assert batch_meanwhile < 60  # and interactive work still went first


def test_cli_submits_in_a_lane_and_refuses_a_bad_one(client: redis.Redis, keys: Keys,
                                                    worker_env: dict[str, str]) -> None:
    proc = baton("submit", "--priority", "batch", "Explain supervised learning.", env=worker_env, timeout=60)
    assert proc.returncode == 0, proc.stderr
    run_id = proc.stdout.strip()
    assert client.hget(keys.run(run_id), "priority") == b"batch"
    assert client.xlen(keys.stream("seed", "planner", 0, "batch")) == 1
    default = baton("submit", "Explain supervised learning.", env=worker_env, timeout=60)
    assert client.hget(keys.run(default.stdout.strip()), "priority") == b"interactive"
    bad = baton("submit", "--priority", "urgent", "hi", env=worker_env, timeout=60)
    assert bad.returncode != 0 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == "baton: error: bad --priority 'urgent': expected one of interactive, batch"


def test_clients_submit_in_a_lane_and_refuse_a_bad_one(client: redis.Redis, keys: Keys, redis_url: str) -> None:
    with Client(redis_url) as c:
        run = c.submit("t", priority="batch")
        assert client.hget(keys.run(run.id), "priority") == b"batch"
        with pytest.raises(ProtocolError, match=r"priority"):
            c.submit("t", priority="urgent")  # type: ignore[arg-type]

    async def main() -> str:
        async with AsyncClient(redis_url) as ac:
            return (await ac.submit("t", priority="batch")).id

    assert client.hget(keys.run(asyncio.run(main())), "priority") == b"batch"
    assert client.xlen(keys.stream("seed", "planner", 0, "batch")) == 2


def test_fork_and_replay_keep_the_run_lane(client: redis.Redis, keys: Keys, workers: Workers, redis_url: str) -> None:
    _start(workers, client)
    with Client(redis_url) as c:
        run = c.submit("Explain the importance of supervised learning.", priority="batch")
        run.wait(timeout=60)
        forked, replayed = run.fork("researcher"), run.replay()
        for new in (forked, replayed):
            new.wait(timeout=60)
            assert new.record().priority == "batch"
    assert client.xlen(keys.stream("seed", "summarizer", 0, "batch")) == 3
    assert client.xlen(keys.stream("seed", "summarizer")) == 0
