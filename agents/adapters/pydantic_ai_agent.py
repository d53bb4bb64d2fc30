"""A Pydantic AI ``Agent`` as a baton role: its model calls through ``ctx.chat_once``.

    from pydantic_ai import Agent
    from baton import App
    from .pydantic_ai_agent import pydantic_role

    app = App("notes")
    pydantic_role(app, "summarize", Agent(instructions="Summarize in one line."))

The agent runs with Pydantic AI's own ``OpenAIChatModel`` over an ``openai`` client whose
transport answers each chat completion with ``ctx.chat_once`` (``transport.py``): the role's
backend, rate limits, budget, batching and the call journal, so a redelivered task replays the
recorded answers instead of calling the model again. The agent's own tools run inside Pydantic AI
(wrap side effects in ``ctx.step`` to make them run once). The output (``str()`` of a structured
one) goes to the role's ``next`` or is the run's result.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel
from pydantic_ai.providers.openai import OpenAIProvider

from ..app import App, Context
from .transport import openai_client

__all__ = ["baton_model", "pydantic_handler", "pydantic_role"]


def baton_model(ctx: Context, name: str = "baton") -> OpenAIChatModel:
    """Pydantic AI's chat model whose calls are ``ctx``'s (journaled) model calls."""
    return OpenAIChatModel(name, provider=OpenAIProvider(openai_client=openai_client(ctx)))


def pydantic_handler(agent: Agent[Any, Any], *, name: str = "agent") -> Callable[[Context, str], Any]:
    """A code-role handler that runs ``agent`` on the task and returns its output as text."""

    async def handler(ctx: Context, task: str) -> str:
        result = await agent.run(task, model=baton_model(ctx))
        return str(result.output)

    handler.__name__ = handler.__qualname__ = f"pydantic_{name}"
    return handler


def pydantic_role(app: App, name: str, agent: Agent[Any, Any], **role_options: Any) -> Callable[[Context, str], Any]:
    """Declare ``agent`` the role ``name`` of ``app``; ``role_options`` are ``app.role``'s."""
    return app.role(name, **role_options)(pydantic_handler(agent, name=name))
