"""Batching and thread defaults of workers, on a real redis-server with the real twin model.

No timing assertions: these check behaviour (what a read returns, what a worker reports, what
the scratchpads hold), never how long anything took.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton.agents.runtime.worker import Worker
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, RoleStreams, cancelled_and_scratchpads, scratchpad, scratchpads, submit
from baton.protocol import Task, decode, encode
from tests.waiting import wait_for

TASKS = [
    "Explain the importance of supervised learning.",
    "Why do we normalise features?",
    "Compare gradient descent with stochastic gradient descent, in detail and with examples.",
    "Overfitting?",
    "Describe the role of a validation set.",
]


@pytest.fixture(scope="module")
def backend(twin: Path) -> Iterator[object]:
    """The twin through the HF backend, loaded once for this module (1 torch thread)."""
    from baton.agents.backends import load_backend

    yield load_backend(str(twin), threads=1)


def _settings(url: str, **kw: object) -> Settings:
    return Settings.from_env({}, redis_url=url, block_ms=50, **kw)


def _run_chain(url: str, backend: object, batch_size: int, tasks: list[str]) -> tuple[list[str], list[int]]:
    """Submit ``tasks``, drive the three roles in-process; return run ids and the batch sizes seen."""
    client = redis.Redis.from_url(url)
    keys = Keys()
    run_ids = [submit(client, keys, Task(run_id=f"run{i}-{batch_size}", role=SEED.entry, task=t))
               for i, t in enumerate(tasks)]
    sizes: list[int] = []
    for spec in SEED.order():
        worker = Worker(_settings(url, batch_size=batch_size, linger_ms=0), SEED, spec.role,
                        backend=backend, client=client)  # type: ignore[arg-type]
        worker.streams.ensure_groups()
        while entries := worker.read(False):
            sizes.append(len(entries))
            assert worker.process(entries) is False
    client.close()
    return run_ids, sizes


def test_batched_equals_unbatched_through_the_worker(redis_url: str, backend: object) -> None:
    """Same tasks, batch size 1 vs 8: every agent's scratchpad holds the same text, token for token."""
    one_ids, one_sizes = _run_chain(redis_url, backend, 1, TASKS)
    many_ids, many_sizes = _run_chain(redis_url, backend, 8, TASKS)
    assert set(one_sizes) == {1}
    assert max(many_sizes) == len(TASKS)  # the batch really held every task (prompts of unequal length)
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    for one, many in zip(one_ids, many_ids, strict=True):
        for spec in SEED.roles:
            a = scratchpad(client, keys, one, spec.agent)
            b = scratchpad(client, keys, many, spec.agent)
            assert len(a) == len(b) == 1
            assert (a[0].task, a[0].response) == (b[0].task, b[0].response)
            assert a[0].meta.tokens == b[0].meta.tokens > 0
    client.close()


def test_batch_read_returns_up_to_batch_size(client: redis.Redis, keys: Keys) -> None:
    """XREADGROUP COUNT B: 5 waiting entries are read as 3, then 2, then none."""
    streams = RoleStreams(client, keys, "seed", "planner", "c1")
    streams.ensure_groups()
    for i in range(5):
        client.xadd(keys.stream("seed", "planner"), {"msg": encode(Task(run_id=f"r{i}", role="planner", task="t"))})
    sizes = [len(streams.read(pending=False, count=3, block_ms=None)) for _ in range(3)]
    assert sizes == [3, 2, 0]


def test_lone_message_is_processed_without_waiting_for_a_batch(redis_url: str, backend: object) -> None:
    """linger 0, batch 8, one task: the first read returns it and the worker hands it off at once."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    run_id = submit(client, keys, Task(run_id="lone", role="planner", task=TASKS[0]))
    worker = Worker(_settings(redis_url, batch_size=8, linger_ms=0), SEED, "planner", backend=backend,
                    client=client)  # type: ignore[arg-type]
    worker.streams.ensure_groups()
    entries = worker.read(False)
    assert len(entries) == 1
    worker.process(entries)
    assert len(scratchpad(client, keys, run_id, "Alice")) == 1
    nxt = client.xrange(keys.stream("seed", "researcher"))
    assert len(nxt) == 1 and decode(nxt[0][1][b"msg"]).run_id == run_id  # type: ignore[union-attr]
    client.close()


def test_lingering_is_for_busy_workers_only(redis_url: str, backend: object) -> None:
    """The worker remembers whether work is flowing (last read > 1 entry); only then does a short read linger."""
    client = redis.Redis.from_url(redis_url)
    keys = Keys()
    worker = Worker(_settings(redis_url, batch_size=8, linger_ms=1), SEED, "planner", backend=backend,
                    client=client)  # type: ignore[arg-type]
    worker.streams.ensure_groups()
    for i in range(2):
        submit(client, keys, Task(run_id=f"busy{i}", role="planner", task=TASKS[i]))
    assert len(worker.read(False)) == 2
    assert worker.last_read == 2
    submit(client, keys, Task(run_id="one", role="planner", task=TASKS[0]))
    assert len(worker.read(False)) == 1
    assert worker.last_read == 1
    client.close()


def test_scratchpads_reads_many_in_one_call(client: redis.Redis, keys: Keys) -> None:
    """The batched memory read equals one scratchpad() per pair, in order, duplicates included."""
    client.hset(keys.pad("r1", "Alice"), mapping={"2-0": json.dumps({"task": "b", "response": "B"}),
                                                  "1-0": json.dumps({"task": "a", "response": "A"})})
    client.hset(keys.pad("r2", "Alice"), mapping={"5-0": json.dumps({"task": "c", "response": "C"})})
    pairs = [("r1", "Alice"), ("r2", "Alice"), ("r3", "Alice"), ("r1", "Alice")]
    assert scratchpads(client, keys, pairs) == [scratchpad(client, keys, r, a) for r, a in pairs]
    assert [e.task for e in scratchpads(client, keys, pairs)[0]] == ["a", "b"]
    assert scratchpads(client, keys, []) == []


def _heartbeats(client: redis.Redis, want: int, procs: list, timeout: float = 90) -> dict[int, dict]:  # type: ignore[type-arg]
    def beats() -> dict[int, dict] | None:  # type: ignore[type-arg]
        assert all(p.poll() in (None, 0) for p in procs), "a worker exited"
        found = {}
        for key in client.scan_iter(match="baton:hb:*"):
            raw = client.get(key)
            if raw:
                info = json.loads(raw)
                found[int(info["pid"])] = info
        return found if len(found) >= want else None

    return wait_for(beats, timeout, f"{want} workers' heartbeats")


def test_worker_process_runs_one_torch_thread_by_default(workers, client: redis.Redis, twin: Path) -> None:  # type: ignore[no-untyped-def]
    """A real worker process reports torch's own thread count in its heartbeat: 1 by default."""
    default = workers.spawn("planner")
    two = workers.spawn("researcher", env={"BATON_TORCH_THREADS": "2"})
    beats = _heartbeats(client, 2, [default, two])
    assert beats[default.pid]["torch_threads"] == 1
    assert beats[two.pid]["torch_threads"] == 2  # the field reports the process's real setting


def test_cancelled_flags_and_scratchpads_in_one_call(client: redis.Redis, keys: Keys) -> None:
    """The worker's pre-run read: cancelled flags per run, scratchpads per pair, as the single reads give."""
    client.hset(keys.pad("r1", "Bob"), mapping={"1-0": json.dumps({"task": "a", "response": "A"})})
    client.sadd(keys.cancelled(), "r2")
    flags, pads = cancelled_and_scratchpads(client, keys, ["r1", "r2"], [("r1", "Bob"), ("r2", "Bob")])
    assert flags == [False, True]
    assert pads == scratchpads(client, keys, [("r1", "Bob"), ("r2", "Bob")])
    assert cancelled_and_scratchpads(client, keys, ["r2"], []) == ([True], [])
    assert cancelled_and_scratchpads(client, keys, [], []) == ([], [])
