"""Apps the tests load by reference (``tests.app.sample_apps:app``), as a worker would."""

from __future__ import annotations

from baton import App, Context, Retry

app = App("sample", retryable=(ConnectionResetError,))


@app.tool
def lookup(order: int, verbose: bool = False) -> str:
    """Look an order up by number."""
    return f"order {order}: shipped" + (" (tracked)" if verbose else "")


@app.role(next="answer")
async def triage(ctx: Context, task: str) -> str:
    return await ctx.generate(f"Triage: {task}")


@app.role()
def answer(ctx: Context, task: str) -> str:
    return ctx.generate(f"Answer: {task}")


def make_app() -> App:
    """An app factory (``tests.app.sample_apps:make_app``)."""
    return app


not_an_app = 42


async def wrong_signature(task: str) -> str:
    return task


def flaky(ctx: Context, task: str) -> str:
    raise Retry("later")
