"""Apps the code-roles benchmark runs (``bench/code_roles.py``)."""

from __future__ import annotations

from baton import App, Context

single = App("bench_code_single")


@single.role(agent="Alice")
async def planner(ctx: Context, task: str) -> str:
    """A code role doing what the seed's template planner does: one prompt, one model call."""
    return await ctx.generate(ctx.prompt(task))


two_calls = App("bench_two_calls")


@two_calls.role(agent="Alice")
async def thinker(ctx: Context, task: str) -> str:
    """Two model calls per task, the second on the first's text."""
    first = await ctx.generate(f"Outline: {task}", max_new_tokens=8)
    return await ctx.generate(f"Expand: {first[-40:]}", max_new_tokens=8)
