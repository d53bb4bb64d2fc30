"""Idempotent submits: a caller's idempotency key names the one run it started, written with it.

The key and the run are written in one atomic step, so no crash leaves a key that names a run
that does not exist, and no two racing submits with one key both start a run:

- a plain submit (:func:`submit_once`): ``WATCH`` the key, read it, and only while it is unset
  ``MULTI`` the key (``SET ... EX ttl``) with the run's writes (``broker.runs.stage_submit``); a
  racing submit that set it first aborts the ``EXEC``, and the next read returns the winner's run id;
- a thread's turn: ``lua/thread_submit.lua`` reads and sets the key in the step that writes the turn.

Either way the key lives in the slot of the run it names (``Keys.idempotency(key, partition)``):
a plain submit's run id is chosen in the key's partition (:func:`key_run_id`; a run id the caller
gives must be in it on Redis Cluster), a turn's key in its thread's partition. A submit refused
before it writes (backpressure, a bad task, a thread that rejects the turn) leaves no key behind,
so a retry may start the run.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import redis

from ..protocol import Budget, Task
from .backpressure import refuse_when_full_op
from .cluster import is_cluster
from .drive import Op, blocking
from .keys import Keys
from .runs import ensure_group_op, stage_submit, staging_mode, task_stream

__all__ = ["MAX_KEY_LEN", "KeyHeld", "held", "held_op", "key_run_id", "submit_once", "submit_once_op"]

MAX_KEY_LEN = 255
"""Longest idempotency key accepted (checked by the submit path)."""


class KeyHeld(Exception):
    """The idempotency key already names a run (``run_id``): that run was started, not this one."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"the idempotency key names run {run_id}")
        self.run_id = run_id


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode() if isinstance(value, bytes) else str(value)


def key_run_id(keys: Keys, key: str) -> str:
    """A fresh run id in the partition of ``key`` (a plain submit's run lives with its key)."""
    return keys.run_id_in(keys.partition(key))


def held_op(keys: Keys, key: str, partition: int) -> Op[str | None]:
    """The run id ``key`` (stored in ``partition``) names, if any; also a key written before keys
    moved into their run's slot (``Keys.legacy_idempotency``: read, never written), so a submit
    retried across that upgrade still gets its run."""
    pipe = yield lambda c: c.pipeline(transaction=False)
    pipe.get(keys.idempotency(key, partition))
    pipe.get(keys.legacy_idempotency(key))
    current, legacy = yield lambda _: pipe.execute()
    return _text(current) or _text(legacy)


held = blocking(held_op)


@refuse_when_full_op
def submit_once_op(keys: Keys, task: Task, key: str, ttl_s: int, *,
                   metadata: Mapping[str, str] | None = None, budget: Budget | None = None) -> Op[str]:
    """Submit ``task`` (as ``broker.runs.submit`` does) and set ``key`` to its run id for ``ttl_s``
    seconds, in one transaction; ``KeyHeld`` (nothing written) when ``key`` names another run. On
    Redis Cluster the task's run id must be in the key's partition (:func:`key_run_id`: one slot).
    A retry whose first call landed finds its own run id and returns it."""
    partition = keys.partition(key)
    if (yield is_cluster) and keys.partition(task.run_id) != partition:
        raise ValueError(f"run {task.run_id} is not in the partition of its idempotency key; use key_run_id")
    name = keys.idempotency(key, partition)
    yield from ensure_group_op(task_stream(keys, task), keys.group(task.role))
    mode = yield from staging_mode(task)
    pipe = yield lambda c: c.pipeline(transaction=True)
    try:
        while True:
            try:
                yield lambda _: pipe.watch(name)
                found = _text((yield lambda _: pipe.get(name)))
                if found == task.run_id:
                    return found  # (a retried submit whose first EXEC landed)
                if found is not None:
                    raise KeyHeld(found)
                pipe.multi()
                pipe.set(name, task.run_id, ex=max(1, ttl_s))
                stage_submit(pipe, keys, task, mode=mode, metadata=metadata, budget=budget)
                yield lambda _: pipe.execute()
                return task.run_id
            except redis.WatchError:
                continue  # another submit set the key between our read and EXEC: read it again
    finally:
        yield lambda _: pipe.reset()


submit_once = blocking(submit_once_op)
