"""The seed workflow across separate worker processes, against a real Redis and the twin model."""

from __future__ import annotations

from pathlib import Path

import redis

from baton.agents.runtime.prompt import notebook_memory
from baton.broker import Keys, PadEntry, agents_in_run, get_run, scratchpad, submit
from baton.protocol import Task, decode
from tests.conftest import Workers
from tests.e2e.helpers import SEED_TASK, notebook, wait_runs
from tests.waiting import wait_for


def _strip(entries: list[PadEntry]) -> list[dict[str, str]]:
    return notebook_memory(entries)


def test_one_worker_consumes_writes_scratchpad_publishes_and_acks(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    workers.spawn("planner")
    workers.wait_ready(client)
    run_id = submit(client, keys, Task(run_id="run-one", role="planner", task=SEED_TASK))
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")), 30, "the planner's handoff", logs=workers.logs)
    (_, fields), = client.xrange(keys.stream("seed", "researcher"))
    nxt = decode(fields[b"msg"])
    assert isinstance(nxt, Task) and nxt.role == "researcher" and nxt.hop == 1
    pad = scratchpad(client, keys, run_id, "Alice")
    assert len(pad) == 1 and nxt.task == f"Research and elaborate: {pad[0].response}"
    assert pad[0].response.startswith(f"Planner agent named Alice. Task: {SEED_TASK}\nMemory: []\nResponse:")
    assert client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0
    assert get_run(client, keys, run_id)["role"] == "researcher"  # type: ignore[index]


def test_three_role_pipeline_reproduces_the_notebook(
    client: redis.Redis, keys: Keys, workers: Workers, twin: Path
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role)
    run_id = submit(client, keys, Task(run_id="run-seed", role="planner", task=SEED_TASK))
    rec = wait_runs(client, keys, [run_id])[run_id]
    assert rec["status"] == "done", workers.logs()
    assert agents_in_run(client, keys, run_id) == ["Alice", "Bob", "Eve"]
    expected = notebook(twin)
    for agent in ("Alice", "Bob", "Eve"):
        assert _strip(scratchpad(client, keys, run_id, agent)) == expected[agent]
    assert rec["result"] == expected["Eve"][0]["response"]
    (_, fields), = client.xrange(keys.results())
    result = decode(fields[b"msg"])
    assert [h.role for h in result.trace] == ["planner", "researcher", "summarizer"]


def test_two_researchers_share_the_load_each_task_once(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    env = {"BATON_BATCH_SIZE": "1"}
    workers.spawn("planner", env={"BATON_BATCH_SIZE": "4"})
    workers.spawn("researcher", env=env)
    workers.spawn("researcher", env=env)
    workers.spawn("summarizer", env={"BATON_BATCH_SIZE": "4"})
    workers.wait_ready(client)
    run_ids = [submit(client, keys, Task(run_id=f"share-{i}", role="planner", task=f"Topic {i}")) for i in range(16)]
    recs = wait_runs(client, keys, run_ids, timeout=120)
    assert all(r["status"] == "done" for r in recs.values()), workers.logs()
    consumers: list[str] = []
    for run_id in run_ids:
        pad = scratchpad(client, keys, run_id, "Bob")
        assert len(pad) == 1
        consumers.append(pad[0].meta.consumer)
    assert len(set(consumers)) == 2, consumers
    results = [decode(f[b"msg"]).run_id for _, f in client.xrange(keys.results())]
    assert sorted(results) == sorted(run_ids)


def test_malformed_entries_are_dead_lettered_and_the_worker_lives_on(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    workers.spawn("planner")
    workers.wait_ready(client)
    stream = keys.stream("seed", "planner")
    bad = [
        {"msg": b"{not json"},
        {"msg": b'{"type":"task","run_id":"r-bad","role":"planner","task":5}'},
        {"msg": b"\xff\xfe\xfd"},
        {"msg": b'{"type":"result","run_id":"r","role":"x","output":"o"}'},
        {"msg": b'{"type":"task","run_id":"r-wrong","role":"summarizer","task":"t"}'},
        {"other": b"field"},
    ]
    for fields in bad:
        client.xadd(stream, fields)
    good = submit(client, keys, Task(run_id="run-good", role="planner", task="ok"))
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) >= 1 and client.xlen(keys.dead()) >= len(bad), 30,
             "the good task's handoff and every dead letter", logs=workers.logs)
    letters = [decode(f[b"msg"]) for _, f in client.xrange(keys.dead())]
    reasons = [d.reason for d in letters]  # type: ignore[union-attr]
    assert "malformed JSON" in reasons[0]
    assert "Expected `str`, got `int` - at `$.task`" in reasons[1]
    assert "invalid UTF-8" in reasons[2]
    assert "unexpected message type 'Result'" in reasons[3]
    assert "arrived on the stream of role 'planner'" in reasons[4]
    assert "no 'msg' field" in reasons[5]
    assert letters[1].run_id == "r-bad" and letters[0].original == "{not json"  # type: ignore[union-attr]
    assert client.xpending(stream, "planner")["pending"] == 0
    assert workers.procs[0].poll() is None
    assert client.hget(keys.run(good), "status") == b"running"
    bad_run = get_run(client, keys, "r-bad") or {}
    assert bad_run["status"] == "failed" and "$.task" in bad_run["error"]
