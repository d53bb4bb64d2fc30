"""An app whose handler dies (SIGKILL) the first time it reaches its 4th model call, for the journal's
end-to-end test: 3 model calls and a step that appends to a file before it."""

from __future__ import annotations

import os
import signal
from pathlib import Path

from baton import App, Context

app = App("crashy")


@app.role()
async def writer(ctx: Context, task: str) -> str:
    texts = [await ctx.generate(f"{word}: {task}", max_new_tokens=4) for word in ("one", "two")]

    def charge() -> int:
        log = Path(os.environ["CRASH_LOG"])
        with log.open("a") as f:
            f.write(f"charged {ctx.idempotency_key}\n")
        return len(log.read_text().splitlines())

    charged = await ctx.step("charge", charge)
    texts.append(await ctx.generate(f"three: {task}", max_new_tokens=4))
    marker = Path(os.environ["CRASH_MARKER"])
    if not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)  # the worker dies in its 4th call
    texts.append(await ctx.generate(f"four: {task}", max_new_tokens=4))
    return f"{len(texts)} calls, charged {charged}"
