"""The code role of the durable-timers chaos run (``bench/chaos_timers.py``).

``baton worker --app bench.timer_app:timers --all-roles`` (``REDIS_URL`` set; the repository root on
the path). The handler takes a task ``"NAME SECONDS"``: a journaled step, a durable sleep of
SECONDS, a wait for the signal ``go`` (its data: NAME), another journaled step.

Each execution of a step body adds a fresh token to the set ``chaos:timers:<run>:<step>`` (retried
with the same token while Redis restarts, so a lost reply adds nothing twice): a step body that ran
twice is two members, one that never ran is none.
"""

from __future__ import annotations

import os
import time
import uuid

import redis

from baton import App, Context

__all__ = ["MARKS", "STEPS", "expected_result", "timers"]

MARKS = "chaos:timers:{run}:{step}"
"""The set of one step's executions in one run (a token per execution)."""

STEPS = ("before", "after")

timers = App("timers")

_client: redis.Redis | None = None


def expected_result(name: str) -> str:
    """What the run of task ``"NAME ..."`` returns once it took its own signal."""
    return f"{name} got {name}"


def _mark(run_id: str, step: str) -> int:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(os.environ["REDIS_URL"])
    token = uuid.uuid4().hex
    deadline = time.monotonic() + 120
    while True:
        try:
            return int(_client.sadd(MARKS.format(run=run_id, step=step), token))
        except redis.RedisError:  # Redis restarting: the step rides it out
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@timers.role()
async def sleeper(ctx: Context, task: str) -> str:
    """Step, durable sleep, signal, step: each step body runs once per run, whatever is killed."""
    name, seconds = task.split()
    await ctx.step("before", lambda: _mark(ctx.run_id, "before"))
    await ctx.sleep(float(seconds))
    data = await ctx.wait_for("go", timeout=float(os.environ.get("CHAOS_WAIT_TIMEOUT_S", "600")))
    await ctx.step("after", lambda: _mark(ctx.run_id, "after"))
    return f"{name} got {data}"
