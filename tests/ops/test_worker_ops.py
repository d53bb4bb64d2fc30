"""Real workers with metrics and JSON logs on: ``baton trace``, ``/metrics``, log lines, ``baton monitor``.

One scenario per module: three worker processes (the twin model) serve three runs and two bad
entries on their own Redis; the tests then read what the workers and Redis recorded.
"""

from __future__ import annotations

import json
import os
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from baton.broker import EmbeddedRedis, Keys, free_port, live_workers, scratchpad, submit
from baton.protocol import Task, encode, new_id
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import SEED_TASK, wait_runs
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")
AGENTS = {"planner": "Alice", "researcher": "Bob", "summarizer": "Eve"}


@dataclass
class Scenario:
    env: dict[str, str]
    client: redis.Redis
    keys: Keys
    runs: list[str]
    ports: dict[str, int]
    log_dir: Path
    wrong_role_run: str


@pytest.fixture(scope="module")
def scenario(tmp_path_factory: pytest.TempPathFactory, twin: Path, cache_dir: Path) -> Iterator[Scenario]:
    tmp = tmp_path_factory.mktemp("ops")
    server = EmbeddedRedis(tmp / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({
        "REDIS_URL": server.url, "BATON_CACHE_DIR": str(cache_dir), "BATON_MODEL": str(twin),
        "HF_HUB_OFFLINE": "1", "BATON_BLOCK_MS": "200", "BATON_HEARTBEAT_INTERVAL_S": "0.5",
        "BATON_HEARTBEAT_TTL_S": "5", "BATON_LOG_FORMAT": "json", "PYTHONUNBUFFERED": "1",
        "BATON_JANITOR_INTERVAL_S": "0",  # the monitor test counts the entries: no trimming however long this takes
        "XDG_CACHE_HOME": str(tmp / "xdg-cache"), "XDG_STATE_HOME": str(tmp / "xdg-state"),
    })
    client = redis.Redis.from_url(server.url)
    keys = Keys()
    workers = Workers(env, tmp)
    ports = {role: free_port() for role in ROLES}
    try:
        for role in ROLES:
            workers.spawn(role, env={"BATON_METRICS_PORT": str(ports[role])})
        workers.wait_ready(client, 3, timeout=120)
        runs = [submit(client, keys, Task(run_id=new_id(), role="planner", task=f"{SEED_TASK} ({i})"))
                for i in range(3)]
        planner = keys.stream("seed", "planner")
        client.xadd(planner, {"msg": b"{not json"})
        wrong = Task(run_id=new_id(), role="researcher", task="for the wrong role")
        client.xadd(planner, {"msg": encode(wrong)})
        recs = wait_runs(client, keys, runs, timeout=120)
        assert all(r["status"] == "done" for r in recs.values()), recs
        wait_for(lambda: client.xlen(keys.dead()) >= 2, 60, "the two bad entries' dead letters", logs=workers.logs)
        yield Scenario(env, client, keys, runs, ports, tmp, wrong.run_id)
    finally:
        workers.stop_all()
        client.close()
        server.stop()


def test_trace_json_rebuilds_every_hop(scenario: Scenario) -> None:
    run_id = scenario.runs[1]
    proc = baton("trace", run_id, "--json", env=scenario.env)
    assert proc.returncode == 0, proc.stderr
    tr = json.loads(proc.stdout)
    assert (tr["run_id"], tr["status"], tr["workflow"]) == (run_id, "done", "seed")
    hops = tr["hops"]
    assert [(h["hop"], h["role"], h["agent"]) for h in hops] == [
        (0, "planner", "Alice"), (1, "researcher", "Bob"), (2, "summarizer", "Eve")]
    assert [h["sender"] for h in hops] == ["submit", "planner", "researcher"]
    assert [h["receivers"] for h in hops] == [["researcher"], ["summarizer"], ["result"]]
    assert hops[0]["parent_id"] is None
    assert [h["parent_id"] for h in hops[1:]] == [h["msg_id"] for h in hops[:-1]]
    assert [h["stream"] for h in hops] == [scenario.keys.stream("seed", r) for r in ROLES]
    for h in hops:
        pad = scratchpad(scenario.client, scenario.keys, run_id, h["agent"])
        assert len(pad) == 1
        meta = pad[0].meta
        assert (h["msg_id"], h["consumer"], h["tokens"], h["started"], h["finished"]) == (
            meta.msg_id, meta.consumer, meta.tokens, meta.started, meta.finished)
        assert h["consumer"].startswith(f"{h['role']}-")
        assert h["step_s"] == round(meta.finished - meta.started, 6) >= 0
        assert h["wait_s"] is not None and h["wait_s"] >= 0
        assert h["task"] == pad[0].task and h["response"] == pad[0].response
    assert tr["tokens"] == sum(h["tokens"] for h in hops) > 0
    assert [(t["role"], t["consumer"], t["msg_id"], t["tokens"]) for t in tr["result_trace"]] == [
        (h["role"], h["consumer"], h["msg_id"], h["tokens"]) for h in hops]
    assert tr["result"] == hops[-1]["response"]
    assert tr["waiting"] == [] and tr["dead_letters"] == []
    text = baton("trace", run_id, env=scenario.env)
    assert text.returncode == 0, text.stderr
    assert "submit → Alice (planner) → Bob (researcher) → Eve (summarizer) → result" in text.stdout
    assert all(h["msg_id"] in text.stdout for h in hops)


def test_trace_of_a_dead_lettered_run_and_of_an_unknown_run(scenario: Scenario) -> None:
    tr = json.loads(baton("trace", scenario.wrong_role_run, "--json", env=scenario.env).stdout)
    assert tr["status"] == "failed" and tr["hops"] == []
    assert [(d["role"], d["reason"]) for d in tr["dead_letters"]] == [
        ("planner", "task for role 'researcher' arrived on the stream of role 'planner'")]
    proc = baton("trace", "no-such-run", env=scenario.env)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == ["baton: error: no run 'no-such-run' (check the id, BATON_PREFIX and "
                                                "REDIS_URL)"]


def scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    return {s.name: s.value for fam in text_string_to_metric_families(text) for s in fam.samples}


def test_each_worker_serves_its_metrics(scenario: Scenario) -> None:
    for role in ROLES:
        m = scrape(scenario.ports[role])
        tokens = sum(scratchpad(scenario.client, scenario.keys, r, AGENTS[role])[0].meta.tokens
                     for r in scenario.runs)
        assert m["baton_messages_processed_total"] == 3
        assert m["baton_model_tokens_total"] == tokens > 0
        assert m["baton_step_seconds_count"] == 3 and m["baton_step_seconds_sum"] >= 0
        assert m["baton_messages_in_flight"] == 0
        assert m["baton_messages_failed_total"] == 0 and m["baton_messages_retried_total"] == 0
        assert m["baton_messages_dead_lettered_total"] == (2 if role == "planner" else 0)
    beats = live_workers(scenario.client, scenario.keys)
    assert {b.role: b.metrics_port for b in beats} == scenario.ports


def test_worker_json_log_lines_carry_role_consumer_run_and_message(scenario: Scenario) -> None:
    handed: dict[str, set[str]] = {}
    for i, role in enumerate(ROLES):
        lines = (scenario.log_dir / f"worker-{role}-{i}.log").read_text().splitlines()
        docs = [json.loads(line) for line in lines]  # every line is one JSON object
        assert docs and all(d["role"] == role and d["consumer"].startswith(f"{role}-") for d in docs)
        assert len({d["consumer"] for d in docs}) == 1
        for d in docs:
            if d["msg"].startswith(f"hop {i} handed to"):
                handed.setdefault(d["run_id"], set()).add(d["msg_id"])
        if role == "planner":
            dead = [d for d in docs if d["msg"].startswith("dead-lettering")]
            assert len(dead) == 2
            assert any(d["run_id"] == scenario.wrong_role_run and d["msg_id"] for d in dead)
    assert set(handed) == set(scenario.runs)
    for run_id, msg_ids in handed.items():
        tr = json.loads(baton("trace", run_id, "--json", env=scenario.env).stdout)
        # Failed once under a loaded parallel `make test` and never alone (cause not found yet):
        # on failure, show every log line of the run and the hops the trace rebuilt.
        assert msg_ids == {h["msg_id"] for h in tr["hops"]}, (
            [(h["hop"], h["role"], h["msg_id"], h["entry_id"], h["consumer"]) for h in tr["hops"]],
            [line for role in ROLES for line in (scenario.log_dir / f"worker-{role}-{ROLES.index(role)}.log")
             .read_text().splitlines() if run_id in line])


def test_monitor_after_the_runs(scenario: Scenario) -> None:
    snap = json.loads(baton("monitor", "--once", "--json", "--interval", "0.2", env=scenario.env).stdout)
    roles = {r["role"]: r for r in snap["roles"]}
    assert roles["planner"]["length"] == 5 and roles["planner"]["delivered"] == 5
    assert [roles[r]["length"] for r in ("researcher", "summarizer")] == [3, 3]
    assert all(r["lag"] == 0 and r["pending"] == 0 for r in roles.values())
    assert all([c["alive"] for c in r["consumers"]] == [True] for r in roles.values())
    assert snap["dead_letters"] == 2 and snap["dead_by_role"] == {"planner": 2}
    assert snap["runs"] == {"done": 3} and snap["runs_in_flight"] == 0
    assert sorted(w["role"] for w in snap["workers"]) == sorted(ROLES)
