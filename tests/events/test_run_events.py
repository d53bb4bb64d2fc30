"""Run events from real worker processes: order, terminal events, crashes, and the CLI that shows them."""

from __future__ import annotations

import json

import redis

from baton.broker import Keys, cancel_run, get_run, read_events, scratchpad, submit
from baton.protocol import (
    Cancelled,
    Done,
    Event,
    Failed,
    HopFinished,
    HopStarted,
    Queued,
    Task,
    Tokens,
)
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import SEED_TASK, wait_runs
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")
ECHO = {"BATON_MODEL": "echo", "BATON_FAULT_INJECTION": "1"}


def _events(client: redis.Redis, keys: Keys, run_id: str) -> list[Event]:
    return [e for _, e in read_events(client, keys, run_id, count=10_000)]


def _terminal(client: redis.Redis, keys: Keys, run_id: str) -> list[Event]:
    def ended() -> list[Event] | None:
        events = _events(client, keys, run_id)
        return events if events and isinstance(events[-1], Done | Failed | Cancelled) else None

    return wait_for(ended, 90, f"the terminal event of {run_id}")


def test_a_seed_run_logs_queued_then_each_hop_with_its_tokens_then_done(
    client: redis.Redis, keys: Keys, workers: Workers, worker_env: dict[str, str]
) -> None:
    for role in ROLES:
        workers.spawn(role, env={"BATON_TOKEN_FLUSH_TOKENS": "4"})
    run_id = submit(client, keys, Task(run_id="ev-seed", role="planner", task=SEED_TASK))
    assert wait_runs(client, keys, [run_id])[run_id]["status"] == "done", workers.logs()
    events = _terminal(client, keys, run_id)
    assert isinstance(events[0], Queued) and events[0].task == SEED_TASK
    assert isinstance(events[-1], Done) and events[-1].output == get_run(client, keys, run_id)["result"]  # type: ignore[index]
    hops = events[1:-1]
    for hop, (role, agent) in enumerate(zip(ROLES, ("Alice", "Bob", "Eve"), strict=True)):
        started = next(i for i, e in enumerate(hops) if isinstance(e, HopStarted) and e.role == role)
        finished = next(i for i, e in enumerate(hops) if isinstance(e, HopFinished) and e.role == role)
        chunks = [e for e in hops[started:finished] if isinstance(e, Tokens)]
        done = hops[finished]
        assert isinstance(done, HopFinished) and done.hop == hop and done.agent == agent
        assert [c.index for c in chunks] == list(range(len(chunks))) and len(chunks) >= 2
        assert all(c.msg_id == done.msg_id for c in chunks)
        (pad,) = scratchpad(client, keys, run_id, agent)
        assert done.output == pad.response and done.tokens == pad.meta.tokens
        assert pad.response.endswith("".join(c.text for c in chunks))  # the chunks are the continuation
    assert [type(e) for e in hops if not isinstance(e, Tokens)] == [HopStarted, HopFinished] * 3

    shown = baton("events", run_id, env=worker_env)
    assert shown.returncode == 0, shown.stderr
    lines = shown.stdout.splitlines()
    assert "queued" in lines[0] and "done" in lines[-1] and sum("hop_finished" in x for x in lines) == 3
    assert sum(x.split()[1] == "tokens" for x in lines) == 3  # one line of chunks per hop
    as_json = [json.loads(x) for x in baton("events", run_id, "--json", env=worker_env).stdout.splitlines()]
    assert [x["id"] for x in as_json] == [i for i, _ in read_events(client, keys, run_id, count=10_000)]
    assert as_json[-1]["event"]["type"] == "done"
    resumed = baton("events", run_id, "--json", "--after", as_json[-2]["id"], env=worker_env).stdout.splitlines()
    assert [json.loads(x)["event"]["type"] for x in resumed] == ["done"]

    followed = baton("submit", "Follow me.", "--follow", env=worker_env)
    assert followed.returncode == 0, followed.stderr
    assert "queued" in followed.stdout and followed.stdout.splitlines()[-1].split()[1] == "done"
    missing = baton("events", "no-such-run", env=worker_env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no run" in missing.stderr


def test_dead_lettered_and_cancelled_runs_end_with_one_terminal_event(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    submit(client, keys, Task(run_id="ev-cancel", role="planner", task="cancel me"))
    assert cancel_run(client, keys, "ev-cancel") == "queued"
    submit(client, keys, Task(run_id="ev-dead", role="planner", task="too far", hop=3, max_hops=2))
    workers.spawn("planner", env=ECHO)
    wait_runs(client, keys, ["ev-dead"])
    dead = _terminal(client, keys, "ev-dead")
    assert [type(e) for e in dead] == [Queued, Failed] and "hop limit" in dead[-1].reason  # type: ignore[union-attr]
    wait_for(lambda: client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0
             and client.xlen(keys.results()) >= 2, 60, "the cancelled task to be halted", logs=workers.logs)
    assert [type(e) for e in _events(client, keys, "ev-cancel")] == [Queued, Cancelled]  # the halt adds none


def test_a_worker_killed_mid_hop_loses_no_hop_event(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    env = {**ECHO, "BATON_LEASE_MS": "1000"}
    first = workers.spawn("planner", env=env)
    for role in ROLES[1:]:
        workers.spawn(role, env=env)
    run_id = submit(client, keys, Task(run_id="ev-crash", role="planner", task="slow [[fault:sleep:1.5]]"))
    wait_for(lambda: any(isinstance(e, HopStarted) for e in _events(client, keys, run_id)), 60,
             "the planner's hop to start", logs=workers.logs)
    first.kill()
    first.wait()
    workers.spawn("planner", env=env)
    events = _terminal(client, keys, run_id)
    assert isinstance(events[-1], Done), workers.logs()
    finished = [e for e in events if isinstance(e, HopFinished)]
    assert [e.role for e in finished] == list(ROLES)  # each hop once, the interrupted one included
    assert sum(isinstance(e, HopStarted) and e.role == "planner" for e in events) == 2  # started again
