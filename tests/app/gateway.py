"""A ``Gateway`` for testing ``Context`` on its own: the real echo backend and the real tool runner,
counting the calls that reach them (the worker's gateway adds limits, budgets and batching)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from baton.agents.backends import Generation, load_backend
from baton.agents.tools.base import ToolContext
from baton.agents.tools.runner import ToolOutcome, run_tool
from baton.broker import Entry
from baton.protocol import Task


@dataclass
class Item:
    """The fields of a work item the context reads."""

    entry: Entry
    task: Task
    memory: list[dict[str, Any]] | None = None


def item(task: Task, deliveries: int = 1) -> Item:
    return Item(Entry(stream="s", id="1-0", data=None, deliveries=deliveries), task)


@dataclass
class EchoGateway:
    backend: Any = field(default_factory=lambda: load_backend("echo"))
    generated: list[str] = field(default_factory=list)
    tools: list[str] = field(default_factory=list)
    executor: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(2))

    async def generate(self, item: Any, prompt: str, *, max_new_tokens: int,
                       stop: Sequence[str] | None = None) -> Generation:
        self.generated.append(prompt)
        out = await asyncio.to_thread(self.backend.generate, [prompt], max_new_tokens=max_new_tokens or 8)
        return out[0]

    chat_backend: Any = None
    chats: int = 0

    async def chat(self, item: Any, request: Any) -> Any:
        self.chats += 1
        backend = self.chat_backend or self.backend
        return (await asyncio.to_thread(backend.chat, [request]))[0]

    async def tool(self, item: Any, name: str, args: Mapping[str, Any]) -> ToolOutcome:
        self.tools.append(name)
        output, error = await asyncio.to_thread(run_tool, self.executor, name, args, ToolContext(), 5.0)
        return ToolOutcome(tool=name, args={k: str(v) for k, v in args.items()}, output=output, error=error)
