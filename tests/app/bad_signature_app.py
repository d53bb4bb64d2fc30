"""An app whose role handler cannot be called as (ctx, task)."""

from baton import App

app = App("bad")


@app.role()
async def planner(task: str) -> str:
    return task
