"""Submitting many runs at once: one pipelined MULTI per batch instead of one round trip per run."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

import redis

from ..protocol import Task
from .backpressure import refuse_when_full
from .cluster import is_cluster
from .drive import run
from .keys import Keys
from .runs import ensure_group_once, stage_submit, staging_mode, submit, task_stream

__all__ = ["SUBMIT_BATCH", "submit_many"]

SUBMIT_BATCH = 500
"""Runs per pipelined MULTI: large enough to amortise the round trip, small enough for Redis."""


@refuse_when_full
def submit_many(
    client: redis.Redis, keys: Keys, tasks: Iterable[Task], *, batch: int = SUBMIT_BATCH,
) -> list[str]:
    """Submit ``tasks`` as :func:`broker.runs.submit` does, ``batch`` runs per MULTI; their run ids.

    Each batch is written whole or not at all; a task that breaks the protocol's constraints
    raises before its batch is sent (earlier batches stay submitted). On a cluster, where a MULTI
    cannot span slots, the runs are submitted one by one.
    """
    ids: list[str] = []
    for chunk in _chunks(tasks, max(1, batch)):
        if is_cluster(client):
            ids += [submit(client, keys, t) for t in chunk]
            continue
        pipe = client.pipeline(transaction=True)
        for task in chunk:
            stage_submit(pipe, keys, task, mode=run(staging_mode(task), client))
        for task in chunk:
            ensure_group_once(client, task_stream(keys, task), keys.group(task.role))
        pipe.execute()
        ids += [t.run_id for t in chunk]
    return ids


def _chunks(tasks: Iterable[Task], size: int) -> Iterator[Sequence[Task]]:
    chunk: list[Task] = []
    for task in tasks:
        chunk.append(task)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk
