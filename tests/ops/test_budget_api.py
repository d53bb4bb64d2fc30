"""Budgets over the HTTP API and the async client: a real ``baton dashboard`` subprocess, real
Redis, echo workers in their own processes."""

from __future__ import annotations

import asyncio

import redis

from baton import AsyncClient, Budget
from baton.broker import Keys
from tests.conftest import Workers
from tests.ops.conftest import Server, wait_status

ROLES = ("planner", "researcher", "summarizer")


def test_api_budget_fields_and_accounting(server: Server, redis_url: str, client: redis.Redis, keys: Keys,
                                          echo_workers: Workers) -> None:
    with server.http() as http:
        for body, detail in [({"max_tokens": 0}, "Expected `int` >= 1 - at `$.max_tokens`"),
                             ({"max_tool_calls": "3"}, "Expected `int | null`, got `str` - at `$.max_tool_calls`")]:
            res = http.post("/v1/runs", json={"task": "hi", **body})
            assert (res.status_code, res.json()["detail"]) == (422, detail)
        assert set(client.keys()) <= {keys.audit().encode()}  # nothing written but the refusals' audit entries
        for role in ROLES:
            echo_workers.spawn(role)
        echo_workers.wait_ready(client)
        over = http.post("/v1/runs", json={"task": "hi", "max_model_calls": 1}).json()["run_id"]
        within = http.post("/v1/runs", json={"task": "hi", "max_model_calls": 3, "max_tokens": 500}).json()["run_id"]
        failed = wait_status(http, over, "failed")
        done = wait_status(http, within, "done")
    assert failed["error"] == "budget exceeded: 2 of 1 model calls"
    assert (failed["record"]["role"], failed["record"]["model_calls"]) == ("researcher", "1")
    assert failed["record"]["usage"]["budget"] == {"max_model_calls": 1}
    usage = done["record"]["usage"]
    assert (usage["model_calls"], usage["tokens"], usage["model_calls_by_role"], usage["budget"]) == (
        3, 0, {r: 1 for r in ROLES}, {"max_model_calls": 3, "max_tokens": 500})
    assert done["record"]["model_calls:planner"] == "1" and usage["tokens_by_model"] == {"echo": 0}

    async def via_async_client() -> tuple[str, list[int]]:
        async with AsyncClient(redis_url) as c:
            run = await c.submit("hi", budget=Budget(max_model_calls=2))
            try:
                await run.wait(timeout=60)
            except Exception as exc:  # noqa: BLE001 - RunFailed is the expected outcome
                reason = str(exc)
            listed = {i.run_id: i for i in await c.runs()}
            info = listed[run.id]
            return reason, [info.model_calls, info.hops, int(info.usage.budget == Budget(max_model_calls=2))]

    reason, counts = asyncio.run(via_async_client())
    assert "budget exceeded: 3 of 2 model calls" in reason and counts == [2, 2, 1]
