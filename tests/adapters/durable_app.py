"""An app whose role runs two agents (draft, then edit) through an adapter, with a side effect in
``ctx.step`` between them and a gate before the second model call, so that a test can SIGKILL the
worker there. ``DURABLE_KIND`` picks the framework: ``sdk`` (OpenAI Agents SDK) or ``pydantic``
(Pydantic AI). The worker imports this module from a folder without the repository's ``agents/``
folder, so ``import agents`` is the SDK."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from baton import App, Context

KIND = os.environ.get("DURABLE_KIND", "sdk")


def _handlers() -> tuple[Callable[..., Any], Callable[..., Any]]:
    if KIND == "sdk":
        from agents import Agent
        from baton.agents.adapters.openai_agents_sdk import agent_handler

        return (agent_handler(Agent(name="drafter", instructions="Draft one sentence.")),
                agent_handler(Agent(name="editor", instructions="Edit the sentence.")))
    from pydantic_ai import Agent as PydanticAgent

    from baton.agents.adapters.pydantic_ai_agent import pydantic_handler

    return (pydantic_handler(PydanticAgent(instructions="Draft one sentence."), name="drafter"),
            pydantic_handler(PydanticAgent(instructions="Edit the sentence."), name="editor"))


draft, edit = _handlers()
app = App(f"durable-{KIND}")


@app.role()
async def write(ctx: Context, task: str) -> str:
    first = await draft(ctx, task)

    def note() -> bool:
        with open(os.environ["DURABLE_LOG"], "a") as log:
            log.write("drafted\n")
        return True

    await ctx.step("note", note)
    ctx.emit({"drafted": True, "delivery": ctx.deliveries})  # after the step's record: the test kills at the gate
    while not Path(os.environ["DURABLE_GATE"]).exists():  # the test SIGKILLs the worker here
        await asyncio.sleep(0.05)
    return str(await edit(ctx, str(first)))
