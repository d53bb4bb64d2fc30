"""``baton monitor`` figures against a state made with plain Redis commands and the broker API."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import pytest
import redis

from baton.agents.ops.monitor import Monitor
from baton.broker import Keys, submit
from baton.protocol import DeadLetter, Task, encode, new_id
from tests.cli import baton
from tests.conftest import ROOT


def make_state(c: redis.Redis, keys: Keys) -> list[str]:
    """planner: 5 runs submitted, 3 delivered (2 pending at a live consumer, 1 acked by a dead one);
    researcher: 3 entries never read; summarizer: an empty stream with its group; 2 dead letters."""
    runs = [submit(c, keys, Task(run_id=new_id(), role="planner", task=f"task {i}")) for i in range(5)]
    planner = keys.stream("seed", "planner")
    c.xreadgroup("planner", "planner-live", {planner: ">"}, count=2)
    c.set(keys.heartbeat("planner-live"), b'{"consumer": "planner-live", "role": "planner"}', ex=60)
    (_, [(entry_id, _)]), = c.xreadgroup("planner", "planner-gone", {planner: ">"}, count=1)
    c.xack(planner, "planner", entry_id)
    researcher = keys.stream("seed", "researcher")
    for i in range(3):
        c.xadd(researcher, {"msg": encode(Task(run_id=runs[i], role="researcher", task="r"))})
    c.xgroup_create(researcher, "researcher", id="0")
    c.xgroup_create(keys.stream("seed", "summarizer"), "summarizer", id="0", mkstream=True)
    for role in ("planner", "researcher"):
        c.xadd(keys.dead(), {"msg": encode(DeadLetter(run_id=runs[4], role=role, reason=f"bad {role}",
                                                       original="{}", attempts=3))})
    c.hset(keys.run(runs[0]), "status", "done")
    c.hset(keys.run(runs[1]), "status", "done")
    c.hset(keys.run(runs[2]), "status", "failed")
    return runs


def by_role(snap: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["role"]: r for r in snap["roles"]}


def test_monitor_once_json_matches_a_known_state(client: redis.Redis, keys: Keys, worker_env: dict[str, str]) -> None:
    make_state(client, keys)
    proc = baton("monitor", "--once", "--json", "--interval", "0.2", env=worker_env)
    assert proc.returncode == 0, proc.stderr
    snap = json.loads(proc.stdout)
    roles = by_role(snap)
    assert list(roles) == ["planner", "researcher", "summarizer"]
    p, r, s = roles["planner"], roles["researcher"], roles["summarizer"]
    assert (p["length"], p["lag"], p["pending"], p["delivered"]) == (5, 2, 2, 3)
    assert [(c["name"], c["pending"], c["alive"]) for c in p["consumers"]] == [
        ("planner-gone", 0, False), ("planner-live", 2, True)]
    assert (r["length"], r["lag"], r["pending"], r["consumers"]) == (3, 3, 0, [])
    assert (s["length"], s["lag"], s["pending"]) == (0, 0, 0)
    assert all(x["acked"] == 0 and x["throughput"] == 0 and x["lag_exact"] for x in roles.values())
    assert snap["dead_letters"] == 2 and snap["dead_by_role"] == {"planner": 1, "researcher": 1}
    assert [d["reason"] for d in snap["recent_dead"]] == ["bad researcher", "bad planner"]
    assert snap["runs"] == {"queued": 2, "done": 2, "failed": 1}
    assert (snap["runs_in_flight"], snap["runs_done"]) == (2, 2)
    assert [w["consumer"] for w in snap["workers"]] == ["planner-live"]
    text = baton("monitor", "--once", "--interval", "0.1", env=worker_env)
    assert text.returncode == 0, text.stderr
    assert "planner-live" in text.stdout and "dead letters 2" in text.stdout


@pytest.mark.parametrize("server", ["redis7", "redis62"])
def test_throughput_counts_messages_acknowledged_between_samples(
    server: str, request: pytest.FixtureRequest, keys: Keys
) -> None:
    url = request.getfixturevalue("redis_url" if server == "redis7" else "redis62")
    c = redis.Redis.from_url(url)
    c.flushall()
    stream = keys.stream("seed", "planner")
    for i in range(10):
        c.xadd(stream, {"msg": encode(Task(run_id=f"r{i}", role="planner", task="t"))})
    c.xgroup_create(stream, "planner", id="0")
    c.xreadgroup("planner", "w1", {stream: ">"}, count=2)  # 2 pending before the first sample
    mon = Monitor(c, keys, [("seed", "planner")])
    first = mon.sample().roles[0]
    assert (first.lag, first.pending, first.acked, first.throughput) == (8, 2, None, None)
    (_, rows), = c.xreadgroup("planner", "w1", {stream: ">"}, count=4)
    c.xack(stream, "planner", *[eid for eid, _ in rows[:3]])  # 4 more delivered, 3 of them acked
    pending_before = [r["message_id"] for r in c.xpending_range(stream, "planner", "-", "+", 10)][:2]
    c.xack(stream, "planner", *pending_before)  # and the 2 that were pending before
    snap = mon.sample()
    fig = snap.roles[0]
    assert (fig.lag, fig.pending, fig.acked) == (4, 1, 5)
    assert snap.interval is not None and fig.throughput == round(5 / snap.interval, 3)
    assert fig.lag_exact
    assert snap.redis_version.startswith("7" if server == "redis7" else "6.2")
    c.close()


def test_a_worker_with_a_bad_metrics_port_says_so_in_one_line(worker_env: dict[str, str]) -> None:
    proc = baton("worker", "planner", env={**worker_env, "BATON_METRICS_PORT": "70000"})
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1] == (
        "baton: error: bad value for BATON_METRICS_PORT: 70000 is not a TCP port (1-65535, 0 = off)")


def test_monitor_json_streams_one_snapshot_per_refresh(client: redis.Redis, keys: Keys,
                                                       worker_env: dict[str, str]) -> None:
    make_state(client, keys)
    proc = subprocess.Popen([sys.executable, "-m", "baton", "monitor", "--json", "--interval", "0.1"],
                            env=worker_env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        snaps = [json.loads(proc.stdout.readline()) for _ in range(3)]
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert [s["roles"][0]["throughput"] is None for s in snaps] == [True, False, False]
    assert all(by_role(s)["planner"]["lag"] == 2 for s in snaps)
