"""The code roles' gateway in-process: coalescing of concurrent handlers' model calls and the run's
budget per call, against a real Redis and the real echo backend (counting its calls)."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
import redis

from baton.agents.backends import Generation, load_backend
from baton.agents.runtime.modelgate import CallRefused, RoleGateway
from baton.agents.runtime.role import RoleRuntime
from baton.agents.runtime.work import WorkItem
from baton.agents.settings import Settings
from baton.agents.workflow import SEED
from baton.broker import Entry, Keys, submit
from baton.protocol import Budget, Task


class Counting:
    """The echo backend, counting the backend calls and the prompts in them."""

    def __init__(self) -> None:
        self.inner = load_backend("echo")
        self.name = self.inner.name
        self.calls: list[int] = []

    def generate(self, prompts: Sequence[str], **kw: Any) -> list[Generation]:
        self.calls.append(len(prompts))
        return list(self.inner.generate(prompts, **kw))


def _gateway(redis_url: str, client: redis.Redis, batch_size: int) -> tuple[RoleGateway, Counting]:
    backend = Counting()
    s = Settings(redis_url=redis_url, model="echo", batch_size=batch_size, stream_tokens=False)
    rt = RoleRuntime(s, SEED, "planner", backend=backend, client=client)  # type: ignore[arg-type]
    return RoleGateway(rt), backend


def _item(run_id: str) -> WorkItem:
    return WorkItem(Entry(stream="s", id="1-0", data=None, deliveries=1), Task(run_id=run_id, role="planner", task="t"))


def _handlers(gw: RoleGateway, items: list[WorkItem], calls: int) -> list[list[str]]:
    async def handler(item: WorkItem) -> list[str]:
        try:
            return [(await gw.generate(item, f"{item.task.run_id} {i}", max_new_tokens=4)).text for i in range(calls)]
        finally:
            gw.end()

    async def main() -> list[list[str]]:
        gw.begin(len(items))
        return list(await asyncio.gather(*(handler(item) for item in items)))

    return asyncio.run(main())


def test_64_handlers_making_2_calls_each_share_backend_calls(redis_url: str, client: redis.Redis) -> None:
    gw, backend = _gateway(redis_url, client, batch_size=16)
    items = [_item(f"r{i}") for i in range(64)]
    texts = _handlers(gw, items, calls=2)
    assert [t[1].startswith(f"r{i} 1") for i, t in enumerate(texts)] == [True] * 64  # each got its own answer
    assert gw.model_calls == sum(backend.calls) == 128
    assert len(backend.calls) <= 128 // 8 and max(backend.calls) <= 16
    assert all(item.calls == 2 for item in items)


def test_a_lone_handlers_call_goes_out_at_once(redis_url: str, client: redis.Redis) -> None:
    gw, backend = _gateway(redis_url, client, batch_size=8)
    _handlers(gw, [_item("alone")], calls=3)
    assert backend.calls == [1, 1, 1]


def test_each_call_counts_against_the_runs_model_call_budget(redis_url: str, client: redis.Redis) -> None:
    keys = Keys()
    run_id = submit(client, keys, Task(run_id="b1", role="planner", task="t"), budget=Budget(max_model_calls=2))
    gw, backend = _gateway(redis_url, client, batch_size=8)
    with pytest.raises(CallRefused, match="budget exceeded: 3 of 2 model calls"):
        _handlers(gw, [_item(run_id)], calls=3)
    assert backend.calls == [1, 1]
