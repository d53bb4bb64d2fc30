"""The price of one broker hop, measured in the driver process, one message at a time.

- ``raw``: redis-py issuing XADD -> XREADGROUP (COUNT 1) -> XACK, the plainest hop;
- ``raw-same``: redis-py issuing exactly the commands a baton worker issues for one message of
  the seed chain, in the same round trips (XADD of the task, XREADGROUP, SMISMEMBER of the
  cancelled set, HGETALL of the scratchpad, EVALSHA of the commit script with ready-made
  arguments), without baton's Python around them;
- ``baton``: baton's own code path: the task is published, then an in-process
  :class:`agents.worker.Worker` (echo backend) reads it and processes it (decode, memory read,
  prompt, handoff, atomic commit).
"""

from __future__ import annotations

import time
from typing import Any

import redis

__all__ = ["measure_hops"]


def _raw(client: redis.Redis, n: int) -> float:
    stream, group = "rawhop:s", "g"
    client.xgroup_create(stream, group, id="0", mkstream=True)
    payload = b"x" * 400
    t0 = time.perf_counter()
    for _ in range(n):
        client.xadd(stream, {"msg": payload})
        reply: Any = client.xreadgroup(group, "c", {stream: ">"}, count=1)
        client.xack(stream, group, reply[0][1][0][0])
    return (time.perf_counter() - t0) / n


def _baton_worker(url: str) -> Any:
    from agents.backends import EchoBackend
    from agents.settings import Settings
    from agents.worker import Worker
    from agents.workflow import SEED

    settings = Settings(redis_url=url, batch_size=1, linger_ms=0, block_ms=100)
    worker = Worker(settings, SEED, "researcher", backend=EchoBackend())
    worker.streams.ensure_groups()
    return worker


def _task(run_id: str) -> Any:
    from protocol import Task

    return Task(run_id=run_id, role="researcher", task="Research and elaborate: " + "x" * 300, hop=1)


def _baton(url: str, n: int) -> float:
    from protocol import encode

    worker = _baton_worker(url)
    stream = worker.keys.stream("researcher")
    t0 = time.perf_counter()
    for i in range(n):
        worker.client.xadd(stream, {"msg": encode(_task(f"b{i}"))})
        entries = worker.streams.read(pending=False, count=1, block_ms=None)
        worker.process(entries)
    elapsed = (time.perf_counter() - t0) / n
    worker.client.close()
    return elapsed


def _raw_same(url: str, n: int) -> float:
    """The baton worker's commands, with the script arguments built before the clock starts."""
    from broker.commit import _LUA, DONE_TTL_S
    from protocol import encode

    worker = _baton_worker(url)
    client: redis.Redis = worker.client
    keys, group, consumer = worker.keys, worker.streams.group, worker.consumer
    stream, out = keys.stream("researcher"), keys.stream("summarizer")
    sha = client.script_load(_LUA)
    tasks = [encode(_task(f"r{i}")) for i in range(n)]
    nxt = encode(_task("next"))
    pad_value = b'{"task": "t", "response": "' + b"y" * 300 + b'"}'
    t0 = time.perf_counter()
    for i in range(n):
        run_id = f"r{i}"
        client.xadd(stream, {"msg": tasks[i]})
        reply: Any = client.xreadgroup(group, consumer, {stream: ">"}, count=1)
        entry_id = reply[0][1][0][0].decode()
        client.smismember(keys.cancelled(), [run_id])
        client.hgetall(keys.pad(run_id, "Bob"))
        script_keys = [stream, keys.done(run_id, run_id), keys.run(run_id), keys.pad(run_id, "Bob"),
                       keys.pads(run_id), out]
        args = [group, consumer, entry_id, DONE_TTL_S, entry_id, pad_value, "Bob", entry_id.split("-")[0], 0, 3,
                "updated_at", 1.0, "hops", 2, "status", "running", nxt]
        client.evalsha(sha, len(script_keys), *script_keys, *args)
    elapsed = (time.perf_counter() - t0) / n
    client.close()
    return elapsed


def measure_hops(url: str, n: int) -> dict[str, float]:
    """Seconds per hop for each variant (the server is flushed before each)."""
    client = redis.Redis.from_url(url)
    out: dict[str, float] = {}
    for name, fn in (("raw", lambda: _raw(client, n)), ("raw-same", lambda: _raw_same(url, n)),
                     ("baton", lambda: _baton(url, n))):
        client.flushall()
        fn()  # warm-up pass (connections, script cache, imports)
        client.flushall()
        out[name] = fn()
    client.close()
    return out
