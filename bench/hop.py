"""The price of one broker hop, measured in the driver process, one message at a time.

- ``raw``: redis-py issuing XADD -> XREADGROUP (COUNT 1) -> XACK, the plainest hop;
- ``raw-same``: redis-py issuing exactly the commands a baton worker issues for one message of
  the seed chain, in the same round trips (XADD of the task; XREADGROUP; SMISMEMBER of the
  cancelled set pipelined with HGETALL of the scratchpad; EVALSHA of the commit script with
  ready-made arguments), without baton's Python around them;
- ``baton``: baton's own code path: the task is published, then an in-process
  :class:`agents.worker.Worker` (echo backend) reads it and processes it (decode, memory read,
  prompt, handoff, atomic commit).
"""

from __future__ import annotations

import time
from typing import Any

import redis

from baton.protocol import RunStatus

__all__ = ["measure_hops"]


class _Raw:
    """XADD -> XREADGROUP -> XACK with plain redis-py calls."""

    def __init__(self, url: str) -> None:
        self.client = redis.Redis.from_url(url)
        self.stream, self.group = "rawhop:s", "g"
        self.client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
        self.payload = b"x" * 400

    def run(self, start: int, n: int) -> None:
        client, stream, group = self.client, self.stream, self.group
        for _ in range(n):
            client.xadd(stream, {"msg": self.payload})
            reply: Any = client.xreadgroup(group, "c", {stream: ">"}, count=1)
            client.xack(stream, group, reply[0][1][0][0])


def _baton_worker(url: str) -> Any:
    from baton.agents.backends import EchoBackend
    from baton.agents.runtime.worker import Worker
    from baton.agents.settings import Settings
    from baton.agents.workflow.spec import SEED

    settings = Settings(redis_url=url, batch_size=1, linger_ms=0, block_ms=100)
    worker = Worker(settings, SEED, "researcher", backend=EchoBackend())
    worker.load()
    worker.streams.ensure_groups()
    return worker


def _task(run_id: str) -> Any:
    from baton.protocol import Task

    return Task(run_id=run_id, role="researcher", task="Research and elaborate: " + "x" * 300, hop=1)


class _Baton:
    """Publish a task, then baton's worker code reads and processes it (echo backend)."""

    def __init__(self, url: str) -> None:
        self.worker = _baton_worker(url)
        self.stream = self.worker.streams.streams[0]

    def run(self, start: int, n: int) -> None:
        from baton.protocol import encode

        worker = self.worker
        for i in range(start, start + n):
            worker.client.xadd(self.stream, {"msg": encode(_task(f"b{i}"))})
            entries = worker.streams.read(pending=False, count=1, block_ms=None)
            worker.process(entries)


class _RawSame:
    """The baton worker's commands in the same round trips, arguments built beforehand."""

    def __init__(self, url: str, total: int) -> None:
        from baton.broker.scripts import library
        from baton.protocol import encode

        worker = _baton_worker(url)
        self.client: redis.Redis = worker.client
        self.keys, self.group, self.consumer = worker.keys, worker.streams.group, worker.consumer
        self.stream, self.out = worker.streams.streams[0], self.keys.stream(worker.workflow.name, "summarizer")
        self.lib = library()
        self.lib.mode(self.client)  # loads the Functions library once, as a worker's first commit does
        self.tasks = [encode(_task(f"r{i}")) for i in range(total)]
        self.next = encode(_task("next"))
        self.pad_value = b'{"task": "t", "response": "' + b"y" * 300 + b'"}'

    def run(self, start: int, n: int) -> None:
        from baton.broker.retention import MARKER_TTL_S

        client, keys, group, consumer, stream = self.client, self.keys, self.group, self.consumer, self.stream
        for i in range(start, start + n):
            run_id = f"r{i}"
            client.xadd(stream, {"msg": self.tasks[i]})
            reply: Any = client.xreadgroup(group, consumer, {stream: ">"}, count=1)
            entry_id = reply[0][1][0][0].decode()
            pipe = client.pipeline(transaction=False)
            pipe.smismember(keys.cancelled(), [run_id])
            pipe.hgetall(keys.pad(run_id, "Bob"))
            pipe.execute()
            script_keys = [stream, keys.done(run_id, run_id), keys.run(run_id), keys.pad(run_id, "Bob"),
                           keys.pads(run_id), self.out]
            args = [group, consumer, entry_id, MARKER_TTL_S, entry_id, self.pad_value, "Bob", entry_id.split("-")[0],
                    0, 3, "updated_at", 1.0, "hops", 2, "status", RunStatus.RUNNING.value, self.next]
            client.execute_command(*self.lib.command(client, "commit", script_keys, args))


def measure_hops(url: str, n: int, chunks: int = 10) -> dict[str, float]:
    """Seconds per hop for each variant: the median over ``chunks`` interleaved slices of ``n``."""
    import statistics

    client = redis.Redis.from_url(url)
    client.flushall()
    per = max(1, n // chunks)
    total = per * (chunks + 1)
    variants = {"raw": _Raw(url), "raw-same": _RawSame(url, total), "baton": _Baton(url)}
    times: dict[str, list[float]] = {name: [] for name in variants}
    for c in range(chunks + 1):  # slice 0 warms up (connections, script cache, imports)
        for name, v in variants.items():
            t0 = time.perf_counter()
            v.run(c * per, per)
            if c:
                times[name].append((time.perf_counter() - t0) / per)
    client.flushall()
    client.close()
    return {name: statistics.median(ts) for name, ts in times.items()}
