"""Two workflows with the same role names on one Redis: each run is served by its own workflow's workers.

The seed chain and ``research_fanout`` both have a planner, a researcher and a summarizer. Their
task streams carry the workflow's name, so the six worker processes below (echo model: the test
is about routing, not text) never take each other's tasks.
"""

from __future__ import annotations

import subprocess

import redis

from baton.agents.runtime.routing import PART_SEPARATOR
from baton.broker import Keys, scratchpad, submit
from baton.broker.stats import discover_streams
from baton.protocol import Task
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs

ROLES = ("planner", "researcher", "summarizer")
FANOUT = "research_fanout"


def _pid(consumer: str) -> int:
    """The pid inside a consumer name ``role-host-pid-suffix`` (the host may hold dashes)."""
    return int(consumer.rsplit("-", 2)[-2])


def test_seed_and_fanout_workers_share_one_redis_without_taking_each_others_tasks(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    workers.env["BATON_MODEL"] = "echo"
    seed_procs: list[subprocess.Popen[bytes]] = [workers.spawn(role) for role in ROLES]
    fan_procs = [workers.spawn(role, "--workflow", FANOUT) for role in ROLES]
    workers.wait_ready(client, 6)
    seed_runs, fan_runs = [], []
    for i in range(3):  # interleaved, so both planners' streams have work at once
        seed_runs.append(submit(client, keys, Task(run_id=f"seed-{i}", role="planner", task=f"Seed topic {i}")))
        fan_runs.append(submit(client, keys, Task(run_id=f"fan-{i}", role="planner", task=f"Fan topic {i}",
                                                  workflow=FANOUT)))
    recs = wait_runs(client, keys, seed_runs + fan_runs, timeout=180)
    assert {r: rec["status"] for r, rec in recs.items()} == dict.fromkeys(seed_runs + fan_runs, "done"), workers.logs()

    seed_pids, fan_pids = {p.pid for p in seed_procs}, {p.pid for p in fan_procs}
    for run_id in fan_runs:
        (alice,) = scratchpad(client, keys, run_id, "Alice")
        bob = scratchpad(client, keys, run_id, "Bob")
        (eve,) = scratchpad(client, keys, run_id, "Eve")
        assert "List three research topics as numbered lines." in alice.response
        assert sorted(e.meta.part for e in bob) == [0, 1, 2], bob
        assert all("Knowledge base:" in e.response and "Shared memory:" in e.response for e in bob)
        assert eve.task.count(PART_SEPARATOR) == 2 and eve.response.startswith(
            "Summarizer agent named Eve. Task: Summarize key points:\nFindings on topic 1 of 3")
        assert {_pid(e.meta.consumer) for e in [alice, *bob, eve]} <= fan_pids
    for run_id in seed_runs:
        pads = {agent: scratchpad(client, keys, run_id, agent) for agent in ("Alice", "Bob", "Eve")}
        assert [len(p) for p in pads.values()] == [1, 1, 1], pads
        (alice,), (bob,), (eve,) = pads.values()
        assert alice.response.startswith(f"Planner agent named Alice. Task: Seed topic {run_id[-1]}\nMemory: ")
        assert "List three research topics" not in alice.response
        assert bob.task.startswith("Research and elaborate: ") and "Knowledge base:" not in bob.response
        assert eve.task.startswith("Summarize key points: ")
        assert {_pid(e.meta.consumer) for e in (alice, bob, eve)} <= seed_pids

    assert discover_streams(client, keys) == sorted(s for wf in ("seed", FANOUT) for role in ROLES
                                                    for s in keys.lane_streams(wf, role))
    for wf in ("seed", FANOUT):
        for role in ROLES:
            assert client.xpending(keys.stream(wf, role), role)["pending"] == 0
    assert client.xlen(keys.dead()) == 0
