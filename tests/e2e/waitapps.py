"""Code roles that sleep and wait for signals, for the end-to-end tests of durable waits
(``baton worker --app tests.e2e.waitapps:timers ROLE``; workers start in the repository root)."""

from __future__ import annotations

import os

from baton import App, Context, WaitTimeout

timers = App("timers")


def _note(line: str) -> int:
    with open(os.environ["BATON_TEST_FILE"], "a", encoding="utf-8") as f:
        f.write(line + "\n")
    return 1


@timers.role()
async def napper(ctx: Context, task: str) -> str:
    """A step, a durable sleep of ``$NAP_S`` seconds, another step: each step runs once."""
    await ctx.step("before", lambda: _note(f"before {task}"))
    await ctx.sleep(float(os.environ.get("NAP_S", "1")))
    await ctx.step("after", lambda: _note(f"after {task}"))
    return f"slept {task}"


@timers.role()
async def approver(ctx: Context, task: str) -> str:
    """Waits for the signal ``approval`` (no timeout) and returns what it said."""
    await ctx.step("asked", lambda: _note(f"asked {task}"))
    data = await ctx.wait_for("approval")
    return f"{task}: {data['by']} said {data['ok']}"


@timers.role()
async def impatient(ctx: Context, task: str) -> str:
    """Waits one second for a signal that never comes: the run fails with the reason."""
    await ctx.wait_for("never", timeout=float(os.environ.get("WAIT_S", "1")))
    return "unreachable"


@timers.role()
async def patient(ctx: Context, task: str) -> str:
    """Catches the timeout and says so."""
    try:
        return str(await ctx.wait_for("never", timeout=float(os.environ.get("WAIT_S", "1"))))
    except WaitTimeout as exc:
        return f"gave up: {exc}"


@timers.role()
async def routed(ctx: Context, task: str) -> str:
    """A wait whose timeout takes the declared route to ``escalate``."""
    await ctx.wait_for("never", timeout=float(os.environ.get("WAIT_S", "1")), on_timeout="escalate")
    return "unreachable"


@timers.role()
async def escalate(ctx: Context, task: str) -> str:
    return f"escalated {task}"


@timers.role()
def plain_sleeper(ctx: Context, task: str) -> str:
    """A plain function (runs in a thread) that sleeps and then waits for ``go``."""
    ctx.sleep(0.5)
    return f"{task} {ctx.wait_for('go')}"
