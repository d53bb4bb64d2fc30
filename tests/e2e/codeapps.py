"""Code roles that the end-to-end tests run in worker processes
(``baton worker --app tests.e2e.codeapps:NAME ROLE``; workers start in the repository root)."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path

from baton import App, Context, Retry

crash = App("crash")
"""Three model calls, one journaled step that appends a line to ``$BATON_TEST_FILE``, a fourth call."""


def _append(path: str, line: str) -> int:
    with open(path, "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return 1


@crash.role()
async def solo(ctx: Context, task: str) -> str:
    for i in range(3):
        await ctx.generate(f"call {i}: {task}", max_new_tokens=4)
    await ctx.step("append", lambda: _append(os.environ["BATON_TEST_FILE"], task))
    return str(await ctx.generate(f"call 3: {task}", max_new_tokens=4))


failing = App("failing")


@failing.role()
async def boom(ctx: Context, task: str) -> str:
    raise ValueError(f"no good: {task}")


slow = App("slow")


@slow.role(timeout=0.5)
async def sleepy(ctx: Context, task: str) -> str:
    await asyncio.sleep(60)
    return task


wide = App("wide")
"""Each handler makes two model calls: concurrent handlers' calls are coalesced."""


@wide.role()
async def twice(ctx: Context, task: str) -> str:
    await ctx.generate(f"first {task}", max_new_tokens=4)
    return str(await ctx.generate(f"second {task}", max_new_tokens=4))


@wide.role(name="plain")
def plain(ctx: Context, task: str) -> str:
    """A plain function: it runs in a thread, its calls go back to the worker's loop."""
    return str(ctx.generate(f"plain {task}", max_new_tokens=4))


flow = App("flow")
"""Explicit outcomes: a fan-out to a pool, its parts joined, a handoff to a named role, a finish."""


@flow.role()
async def splitter(ctx: Context, task: str) -> object:
    return ctx.fan_out("part", [f"{task} a", f"{task} b", f"{task} c"])


@flow.role(next="gatherer")
async def part(ctx: Context, task: str) -> str:
    return task.upper()


@flow.role(join=True)
async def gatherer(ctx: Context, task: str) -> object:
    return ctx.handoff("closer", task.replace("\n\n", " | "))


@flow.role()
async def closer(ctx: Context, task: str) -> object:
    ctx.scratchpad["seen"] = task
    return ctx.finish(f"done: {task}")


again = App("again", retryable=[ConnectionResetError])
"""``baton.Retry`` and an exception type the app marks retryable: delivered again, not dead-lettered."""


@again.role()
async def patient(ctx: Context, task: str) -> str:
    if ctx.deliveries == 1:
        raise Retry("not yet", delay=0.2)
    if ctx.deliveries == 2:
        raise ConnectionResetError("peer reset")
    return f"ok after {ctx.deliveries} deliveries"


reviewed = App("reviewed")
"""A code role with human review: its output waits for a decision, then goes on to ``next``."""


@reviewed.role(next="after", review="human")
async def draft(ctx: Context, task: str) -> str:
    return f"draft of {task}"


@reviewed.role()
async def after(ctx: Context, task: str) -> object:
    return ctx.finish(f"final: {task}")


chatty = App("chatty")
"""Answers with the thread's earlier turns as ``ctx.history`` shows them, then the task."""


@chatty.role()
async def listener(ctx: Context, task: str) -> str:
    seen = " | ".join(f"{t.task} -> {t.status}:{t.result}" for t in ctx.history)
    return f"[{seen}] {task}"


once = App("once")
"""A step whose body notes each attempt, waits for the file ``$BATON_GATE`` and then makes its effect
idempotent by its key (``ctx.idempotency_key`` and the step's name): the pattern OPERATIONS advises."""


def _charge(key: str) -> str:
    path = os.environ["BATON_TEST_FILE"]
    _append(path, f"attempt {key}")
    while not os.path.exists(os.environ["BATON_GATE"]):
        time.sleep(0.05)
    effects = path + ".effects"
    done = Path(effects).read_text(encoding="utf-8").split() if os.path.exists(effects) else []
    if key not in done:  # the external system's dedupe on the key (an Idempotency-Key, a unique row)
        _append(effects, key)
    return key


@once.role()
async def charger(ctx: Context, task: str) -> str:
    key = f"{ctx.idempotency_key}:charge"
    return f"charged {await ctx.step('charge', lambda: _charge(key))}"
