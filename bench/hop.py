"""The price of one broker hop, measured in the driver process, one message at a time.

- ``raw``: redis-py issuing XADD -> XREADGROUP (COUNT 1) -> XACK, the plainest hop;
- ``raw-same``: redis-py issuing the commands a baton worker issues for one message of the seed
  chain, in the same round trips (XADD of the task; XREADGROUP; the ``started`` function: the
  cancelled flag, ``hop_started``, the record's budget fields and the scratchpad; the ``commit``
  function, its arguments built beforehand by baton's own builders), without baton's Python
  around them;
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
    """The commands a baton worker sends for one message, in the same round trips, with their
    arguments built beforehand by baton's own builders (``broker.prefetch.started_call``,
    ``broker.commit.commit_call``): the Redis side of a hop without the worker's Python around it."""

    def __init__(self, url: str, total: int) -> None:
        from baton.broker import Entry, Handoff
        from baton.broker.budget import RESERVE_FIELDS, usage_counts
        from baton.broker.commit import commit_call
        from baton.broker.prefetch import started_call
        from baton.broker.scripts import library
        from baton.protocol import HopFinished, HopStarted, Tokens, encode, encode_event

        worker = _baton_worker(url)
        self.client: redis.Redis = worker.client
        keys, group, consumer = worker.keys, worker.streams.group, worker.consumer
        self.group, self.consumer = group, consumer
        self.stream = worker.streams.streams[0] + ":raw-same"  # its own stream: entry ids chosen here
        self.client.xgroup_create(self.stream, group, id="0", mkstream=True)
        out = keys.stream(worker.workflow.name, "summarizer")
        self.lib = library()
        self.lib.mode(self.client)  # loads the Functions library once, as a worker's first commit does
        self.calls: list[tuple[str, bytes, Any, Any]] = []
        output = "Research and elaborate: " + "y" * 300
        for i in range(total):
            run_id, entry_id, task = f"r{i}", f"{i + 1}-0", _task(f"r{i}")
            common = {"run_id": run_id, "at": 1.0, "role": "researcher", "agent": "Bob", "hop": 1, "msg_id": task.id}
            started = started_call(keys, keys.partition(run_id), [(run_id, encode_event(HopStarted(
                consumer=consumer, **common)))], [(run_id, "Bob")], (*RESERVE_FIELDS, "tenant"))
            handoff = Handoff(
                entry=Entry(self.stream, entry_id, encode(task)), run_id=run_id, msg_id=task.id,
                outputs=[(out, encode(_task(run_id)))], pad=("Bob", entry_id, b'{"task": "t", "response": "'
                                                                + b"y" * 300 + b'"}'),
                record={"updated_at": 1.0, "hops": 2, "status": RunStatus.RUNNING.value, "role": "summarizer"},
                partition=keys.partition(run_id),
                events=[encode_event(Tokens(text=output, **common)),
                        encode_event(HopFinished(consumer=consumer, tokens=40, output=output, **common))],
                counts=usage_counts("researcher", "echo", 40))
            self.calls.append((entry_id, encode(task), started, commit_call(keys, group, consumer, handoff)))

    def run(self, start: int, n: int) -> None:
        client, lib, stream = self.client, self.lib, self.stream
        for entry_id, task, started, commit in self.calls[start:start + n]:
            client.xadd(stream, {"msg": task}, id=entry_id)
            client.xreadgroup(self.group, self.consumer, {stream: ">"}, count=1)
            client.execute_command(*lib.command(client, "started", *started))
            client.execute_command(*lib.command(client, "commit", *commit))


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
