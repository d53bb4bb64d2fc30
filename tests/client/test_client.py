"""The Python client against a real Redis and echo worker processes."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton import AsyncClient, Client, RunCancelled, RunFailed, RunNotFound, RunStatus
from baton.broker import Keys
from baton.protocol.events import Done, HopFinished, Queued
from tests.conftest import ROOT, Workers

ROLES = ("planner", "researcher", "summarizer")


@pytest.fixture
def echo_workers(workers: Workers, client: redis.Redis) -> Workers:
    workers.env.update({"BATON_MODEL": "echo", "BATON_FAULT_INJECTION": "1"})
    for role in ROLES:
        workers.spawn(role)
    workers.wait_ready(client)
    return workers


@pytest.fixture
def baton_client(redis_url: str) -> Iterator[Client]:
    with Client(redis_url) as c:
        yield c


def test_submit_wait_events_and_scratchpads(baton_client: Client, echo_workers: Workers) -> None:
    run = baton_client.submit("Explain the importance of supervised learning.", metadata={"user": "ada"})
    result = run.wait(timeout=60)
    assert result.startswith("Summarizer agent named Eve. Task: Summarize key points:")
    assert run.status() is RunStatus.DONE
    events = list(run.events())
    assert isinstance(events[0][1], Queued) and isinstance(events[-1][1], Done)
    assert [e.role for _, e in events if isinstance(e, HopFinished)] == list(ROLES)
    middle = events[len(events) // 2][0]
    assert [i for i, _ in run.events(after=middle)] == [i for i, _ in events if i > middle]
    pads = run.scratchpads()
    assert list(pads) == ["Alice", "Bob", "Eve"] and all(len(v) == 1 for v in pads.values())
    assert [h.role for h in run.trace().hops] == list(ROLES)
    assert baton_client.run(run.id).record().metadata == {"user": "ada"}
    listed = baton_client.runs(status="done")
    assert [r.run_id for r in listed] == [run.id] and listed[0].result == result


def test_typed_errors(baton_client: Client, echo_workers: Workers, client: redis.Redis, keys: Keys) -> None:
    with pytest.raises(RunNotFound):
        baton_client.run("no-such-run")
    poisoned = baton_client.submit("[[fault:raise:99]] always fails")
    with pytest.raises(RunFailed) as failed:
        poisoned.wait(timeout=60)
    assert failed.value.role == "planner" and "delivered" in failed.value.reason
    echo_workers.stop_all()
    parked = baton_client.submit("nobody serves this now")
    with pytest.raises(TimeoutError):
        parked.wait(timeout=0.5)
    assert parked.cancel() == "queued"
    with pytest.raises(RunCancelled):
        parked.wait(timeout=5)


def test_the_async_client_does_the_same(redis_url: str, echo_workers: Workers) -> None:
    async def main() -> tuple[str, list[str]]:
        async with AsyncClient(redis_url) as c:
            run = await c.submit("Explain the importance of supervised learning.")
            result = await run.wait(timeout=60)
            kinds = [type(e).__name__ async for _, e in run.events()]
            return result, kinds

    result, kinds = asyncio.run(main())
    assert result.startswith("Summarizer agent named Eve. Task: Summarize key points:")
    assert kinds[0] == "Queued" and kinds[-1] == "Done" and kinds.count("HopFinished") == 3


def _readme_examples() -> list[str]:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Use baton from your application"):text.index("### Events, review, fork")]
    return re.findall(r"```python\n(.*?)```", section, re.S)


def test_the_readme_examples_run_as_written(echo_workers: Workers, tmp_path: Path) -> None:
    examples = _readme_examples()
    assert len(examples) == 2  # the sync and the async example
    for i, code in enumerate(examples):
        script = tmp_path / f"example{i}.py"
        script.write_text(code)
        proc = subprocess.run([sys.executable, str(script)], env=echo_workers.env, capture_output=True, text=True,
                              timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert "Done" in proc.stdout and "Summarizer agent named Eve" in proc.stdout, proc.stdout
