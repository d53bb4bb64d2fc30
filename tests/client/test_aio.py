"""The asyncio client speaks redis.asyncio natively: no worker thread, no synchronous connection.

Echo worker processes run the shipped ``reviewed`` workflow (the seed chain with the planner's output
reviewed by a person); every step below goes through ``AsyncClient``/``AsyncRun`` alone. Traces and
webhook resends are the sync client's own ops, awaited: they give what the sync client gives.
"""

from __future__ import annotations

import asyncio
import threading
import time

import msgspec
import pytest
import redis

from baton import AsyncClient, Client, RunCancelled, RunFailed, RunNotFound, RunStatus, ThreadBusy
from baton.agents.ops import trace as _trace
from baton.agents.settings import Settings
from baton.aio import AsyncRun
from baton.broker import Keys
from baton.broker.webhooks import get_delivery, save
from baton.protocol import DeadLetter, encode
from tests.conftest import Workers

ROLES = ("planner", "researcher", "summarizer")


@pytest.fixture
def reviewed_workers(workers: Workers, client: redis.Redis) -> Workers:
    workers.env.update({"BATON_MODEL": "echo"})
    for role in ROLES:
        workers.spawn(role, "--workflow", "reviewed")
    workers.wait_ready(client, len(ROLES), timeout=180)
    return workers


async def _reaches(run: AsyncRun, status: RunStatus) -> None:
    for _ in range(600):  # bounded: at most about a minute
        if await run.status() is status:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"run {run.id} never reached {status}")


def _made_no_sync_connection(c: AsyncClient) -> None:
    assert not hasattr(c, "redis") and not hasattr(c, "_sync"), "the async client made a synchronous connection"
    assert not hasattr(AsyncClient, "_in_thread") and not hasattr(AsyncRun, "_on_run")


def test_submit_review_fork_replay_and_cancel_through_the_async_client_without_a_thread(
        redis_url: str, reviewed_workers: Workers) -> None:
    async def main() -> tuple[str, _trace.RunTrace]:
        threads = threading.active_count()
        async with AsyncClient(redis_url) as c:
            approved = await c.submit("plan the approved one", workflow="reviewed")
            await _reaches(approved, RunStatus.REVIEW)
            await approved.approve("EDITED PLAN")
            result = await approved.wait(timeout=60)
            assert "EDITED PLAN" in result
            pads = await approved.scratchpads()
            assert list(pads) == ["Alice", "Bob", "Eve"]
            trace = await approved.trace()
            assert trace.status == "done" and [h.role for h in trace.hops] == list(ROLES)
            assert trace.hops[0].sender == "submit" and trace.hops[-1].sender == "researcher"
            assert trace.hops[-1].receivers == ["result"] and trace.result == result

            rejected = await c.submit("plan the rejected one", workflow="reviewed")
            await _reaches(rejected, RunStatus.REVIEW)
            await rejected.reject("not this one")
            with pytest.raises(RunFailed, match="not this one"):
                await rejected.wait(timeout=30)

            forked = await approved.fork("researcher", "a new research task")
            assert "a new research task" in await forked.wait(timeout=60)
            assert (await forked.record()).run_id == forked.id != approved.id

            replayed = await approved.replay()
            await _reaches(replayed, RunStatus.REVIEW)  # it starts over, so it is reviewed again
            assert await replayed.cancel() == "review"
            with pytest.raises(RunCancelled):
                await replayed.wait(timeout=10)
            assert await approved.cancel() == "done"  # an ended run stays ended
            assert approved.client is c
            _made_no_sync_connection(c)
            assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
            return approved.id, trace

    run_id, trace = asyncio.run(main())
    with Client(redis_url) as sync:
        assert sync.run(run_id).trace() == trace  # one trace op for both clients


def test_threads_signals_refusals_and_schedules_through_the_async_client_without_a_thread(redis_url: str) -> None:
    """No worker serves these runs: a thread's turns queue, a signal to a run is kept, a deleted
    thread cancels its turns, a refused submit raises the public error, schedules are made, paused,
    resumed and deleted, all without a thread."""
    async def main() -> None:
        threads = threading.active_count()
        async with AsyncClient(redis_url) as c:
            first = await c.submit("turn one", thread="chat-1")
            second = await c.submit("turn two", thread="chat-1")
            info = await c.thread("chat-1")
            assert info is not None and info.active == first.id and info.queued == [second.id]
            assert [t.thread_id for t in await c.threads()] == ["chat-1"]
            with pytest.raises(ThreadBusy):
                await c.submit("turn three", thread="chat-1", thread_policy="reject")
            assert await c.signal(first.id, "go", {"n": 1}) is False  # kept until a wait asks
            with pytest.raises(RunNotFound):
                await c.signal("no-such-run", "go")
            assert await c.delete_thread("chat-1") is True
            for run in (first, second):
                with pytest.raises(RunCancelled):
                    await run.wait(timeout=10)
            assert await c.thread("chat-1") is None
            again = await c.submit("once", idempotency_key="k-1")
            assert (await c.submit("twice", idempotency_key="k-1")).id == again.id
            assert await c.failed_webhooks() == []
            made = await c.add_schedule("nightly", "0 3 * * *", task="report")
            assert made.name == "nightly" and [s.name for s in await c.schedules()] == ["nightly"]
            assert await c.pause_schedule("nightly") is True and (await c.schedules())[0].paused
            assert await c.resume_schedule("nightly") is True and not (await c.schedules())[0].paused
            assert await c.delete_schedule("nightly") is True and await c.schedules() == []
            assert await c.pause_schedule("nightly") is False
            _made_no_sync_connection(c)
            assert threading.active_count() == threads, [t.name for t in threading.enumerate()]

    asyncio.run(main())


def test_webhook_resends_and_traces_through_the_async_client_without_a_thread(
        redis_url: str, client: redis.Redis, keys: Keys) -> None:
    """No worker serves the run: its webhook delivery is marked failed here, then re-sent through the
    async client; its trace shows the task waiting for the planner and a dead letter of the run."""
    settings = Settings(redis_url=redis_url, webhook_allow="127.0.0.0/8")

    async def submit() -> str:
        async with AsyncClient(settings=settings) as c:
            return (await c.submit("hooked", webhook="http://127.0.0.1:9/hook")).id

    run_id = asyncio.run(submit())
    delivery = get_delivery(client, keys, run_id)
    assert delivery is not None and delivery.status == "waiting"
    save(client, keys, msgspec.structs.replace(delivery, status="failed", attempts=3, last_error="HTTP 500"))
    letter = DeadLetter(run_id=run_id, role="planner", reason="a dead letter of the run", original="{}", attempts=2)
    client.xadd(keys.dead(keys.partition(run_id)), {"msg": encode(letter)})

    async def main() -> _trace.RunTrace:
        threads = threading.active_count()
        async with AsyncClient(settings=settings) as c:
            assert [d.run_id for d in await c.failed_webhooks()] == [run_id]
            before = time.time()
            assert await c.resend_webhook(run_id) is True
            assert await c.failed_webhooks() == []
            assert await c.resend_webhook("no-such-run") is False

            run = await c.run(run_id)
            trace = await run.trace()
            assert (trace.status, trace.hops, trace.result_trace) == ("queued", [], [])
            assert [(w.role, w.sender, w.task) for w in trace.waiting] == [("planner", "submit", "hooked")]
            assert [(d["role"], d["reason"], d["attempts"]) for d in trace.dead_letters] == [
                ("planner", "a dead letter of the run", 2)]
            with pytest.raises(_trace.RunNotFound):
                await AsyncRun(c, "no-such-run").trace()
            _made_no_sync_connection(c)
            assert threading.active_count() == threads, [t.name for t in threading.enumerate()]
        resent = get_delivery(client, keys, run_id)
        assert resent is not None and (resent.status, resent.last_error, resent.attempts) == ("pending", "", 3)
        assert before <= resent.retry_from == resent.next_at <= time.time()
        return trace

    trace = asyncio.run(main())
    with Client(settings=settings) as sync:
        assert sync.run(run_id).trace() == trace  # one trace op for both clients
        assert sync.resend_webhook(run_id) is True
