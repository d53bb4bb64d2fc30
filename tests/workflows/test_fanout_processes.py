"""The shipped fan-out example end to end: separate worker processes, two researchers.

The workers run the echo model: the split, the two consumers and the join are under test, not the
model (an echo worker starts on about 1 s of CPU, a twin worker on about 9 s). The fan-out on the
twin runs in tests/workflows/test_inline.py."""

from __future__ import annotations

import redis

from baton.agents.runtime.routing import PART_SEPARATOR
from baton.broker import Keys, get_run, scratchpad, submit
from baton.protocol import Task
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs

WORKFLOW = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")


def test_research_fanout_with_two_researcher_processes(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.env["BATON_MODEL"] = "echo"
    one = {"BATON_BATCH_SIZE": "1"}
    workers.spawn("planner", "--workflow", WORKFLOW)
    workers.spawn("researcher", "--workflow", WORKFLOW, env=one)
    workers.spawn("researcher", "--workflow", WORKFLOW, env=one)
    workers.spawn("summarizer", "--workflow", "research_fanout")  # the shipped name works too
    workers.wait_ready(client, 4)
    run_ids = [submit(client, keys, Task(run_id=f"fan-{i}", role="planner", task=f"Topic {i}",
                                         workflow="research_fanout")) for i in range(2)]
    recs = wait_runs(client, keys, run_ids, timeout=180)
    assert all(r["status"] == "done" for r in recs.values()), (recs, workers.logs())
    consumers = set()
    for run_id in run_ids:
        bob = scratchpad(client, keys, run_id, "Bob")
        assert sorted(e.meta.part for e in bob) == [0, 1, 2], bob  # each topic handled once
        assert all(e.meta.tools[0].tool == "kb_search" for e in bob)
        consumers |= {e.meta.consumer for e in bob}
        (eve,) = scratchpad(client, keys, run_id, "Eve")  # the join ran once, with all three parts
        assert [p.split(":")[0] for p in eve.task.split(PART_SEPARATOR)] == [
            f"Findings on topic {i} of 3" for i in (1, 2, 3)]
        assert get_run(client, keys, run_id)["result"] == eve.response  # type: ignore[index]
    assert len(consumers) == 2, consumers  # both researcher processes took parts
    assert client.xlen(keys.results()) == 2
    for role in ("planner", "researcher", "summarizer"):
        assert client.xpending(keys.stream("research_fanout", role), role)["pending"] == 0
