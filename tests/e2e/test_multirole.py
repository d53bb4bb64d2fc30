"""Cross-role batching: one ``baton worker ROLE ROLE...`` process serves several roles, and the
prompts of different roles go through one model call (recorded in each hop's ``meta.batch``)."""

from __future__ import annotations

import re
import signal
import time

import redis

from baton.broker import Keys, PadEntry, get_run, parse_consumer, scratchpad, submit
from baton.protocol import Task, decode
from tests.cli import baton
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

SEED_ROLES = ("planner", "researcher", "summarizer")
AGENTS = ("Alice", "Bob", "Eve")
FANOUT = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")
ECHO = {"BATON_MODEL": "echo"}


def _submit(client: redis.Redis, keys: Keys, prefix: str, n: int) -> list[str]:
    return [submit(client, keys, Task(run_id=f"{prefix}-{i}", role="planner", task=f"Topic {i}")) for i in range(n)]


def _trickle(client: redis.Redis, keys: Keys, prefix: str, n: int, gap_s: float) -> list[str]:
    """``n`` runs ``gap_s`` apart: each role's batch is short when the next role's work arrives, so
    roles' batches share model calls (a full one would go alone: ``plan_calls``)."""
    run_ids = []
    for i in range(n):
        run_ids.append(submit(client, keys, Task(run_id=f"{prefix}-{i}", role="planner", task=f"Topic {i}")))
        time.sleep(gap_s)
    return run_ids


def _hops(client: redis.Redis, keys: Keys, run_ids: list[str]) -> list[PadEntry]:
    """Every scratchpad entry of ``run_ids``, each agent's exactly once per run."""
    hops = []
    for run_id in run_ids:
        for agent in AGENTS:
            pad = scratchpad(client, keys, run_id, agent)
            assert len(pad) == 1, (run_id, agent, pad)
            hops.append(pad[0])
    return hops


def _cross_role(hops: list[PadEntry]) -> list[PadEntry]:
    """The hops whose model call held prompts of more than one role."""
    return [h for h in hops if h.meta.batch is not None and len(h.meta.batch.roles) > 1]


def _assert_done(client: redis.Redis, keys: Keys, workers: Workers, run_ids: list[str], timeout: float = 120) -> None:
    recs = wait_runs(client, keys, run_ids, timeout=timeout)
    assert all(r["status"] == "done" for r in recs.values()), (recs, workers.logs())
    results = [decode(f[b"msg"]).run_id for _, f in client.xrange(keys.results())]
    assert sorted(results) == sorted(run_ids)  # each run finished once
    for role in SEED_ROLES:
        assert client.xpending(keys.stream("seed", role), role)["pending"] == 0


def test_one_process_serves_three_roles_with_cross_role_model_calls(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn(*SEED_ROLES, env={**ECHO, "BATON_BATCH_SIZE": "8"})
    workers.wait_ready(client, 3)  # one heartbeat per role
    run_ids = _trickle(client, keys, "multi", 24, 0.003)
    _assert_done(client, keys, workers, run_ids)
    hops = _hops(client, keys, run_ids)
    pids = {parse_consumer(h.meta.consumer).pid for h in hops}  # type: ignore[union-attr]
    assert pids == {proc.pid}
    mixed = _cross_role(hops)
    assert mixed, workers.logs()  # planner and researcher prompts (at least) shared a generate call
    assert all(h.meta.batch is not None and h.meta.role in h.meta.batch.roles for h in mixed)
    log = "".join(p.read_text() for p in workers.log_dir.glob("worker-*.log"))
    assert re.search(r"model call: \d+ prompts of roles \w+,\w+", log)  # the per-call log line says so too
    for role in SEED_ROLES:  # each role still has its consumer: the health check sees it
        check = baton("worker", role, "--check", env=workers.env)
        assert check.returncode == 0 and check.stdout.startswith(f"ok: {role}-"), check


def test_multi_role_process_with_the_twin_model(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.spawn(*SEED_ROLES, env={"BATON_BATCH_SIZE": "8"})
    workers.wait_ready(client, 3, timeout=120)
    run_ids = _trickle(client, keys, "twin", 8, 0.01)
    _assert_done(client, keys, workers, run_ids, timeout=240)
    hops = _hops(client, keys, run_ids)
    for h in hops:  # the real model continued each prompt
        assert h.response.startswith(h.meta.role.capitalize())
    assert _cross_role(hops), workers.logs()
    assert baton("worker", "--check", *SEED_ROLES, env=workers.env).returncode == 0


def test_all_roles_runs_the_fanout_workflow(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.spawn("--all-roles", "--workflow", FANOUT, env=ECHO)
    workers.wait_ready(client, 3)
    run_ids = [submit(client, keys, Task(run_id=f"fan-{i}", role="planner", task=f"Topic {i}",
                                         workflow="research_fanout")) for i in range(3)]
    recs = wait_runs(client, keys, run_ids, timeout=120)
    assert all(r["status"] == "done" for r in recs.values()), (recs, workers.logs())
    for run_id in run_ids:
        assert sorted(e.meta.part for e in scratchpad(client, keys, run_id, "Bob")) == [0, 1, 2]
        (eve,) = scratchpad(client, keys, run_id, "Eve")
        assert get_run(client, keys, run_id)["result"] == eve.response  # type: ignore[index]
    for role in SEED_ROLES:
        assert client.xpending(keys.stream("research_fanout", role), role)["pending"] == 0


def test_sigterm_drains_the_batches_in_flight_and_exits_0(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    proc = workers.spawn(*SEED_ROLES, env={**ECHO, "BATON_ECHO_DELAY_S": "1.5"})
    workers.wait_ready(client, 3)
    run_ids = _submit(client, keys, "drain", 1)
    stream = keys.stream("seed", "planner")
    wait_for(lambda: client.xpending(stream, "planner")["pending"] == 1, 30, "the planner batch in flight",
             logs=workers.logs)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, workers.logs()
    assert client.xpending(stream, "planner")["pending"] == 0  # finished and acked, not abandoned
    assert all(len(scratchpad(client, keys, r, "Alice")) == 1 for r in run_ids)
    assert all(get_run(client, keys, r)["role"] == "researcher" for r in run_ids)  # type: ignore[index]


def test_an_unknown_role_is_a_one_line_error(worker_env: dict[str, str]) -> None:
    res = baton("worker", "planner", "nosuch", env={**worker_env, **ECHO})
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    assert len(res.stderr.strip().splitlines()) == 1 and "nosuch" in res.stderr, res.stderr
    both = baton("worker", "planner", "--all-roles", env={**worker_env, **ECHO})
    assert both.returncode != 0 and len(both.stderr.strip().splitlines()) == 1, both.stderr


def test_two_multi_role_processes_share_the_work(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    env = {**ECHO, "BATON_BATCH_SIZE": "2"}
    procs = [workers.spawn("--all-roles", env=env), workers.spawn("--all-roles", env=env)]
    workers.wait_ready(client, 6)
    run_ids = _submit(client, keys, "pair", 40)
    _assert_done(client, keys, workers, run_ids)
    hops = _hops(client, keys, run_ids)  # every hop ran exactly once
    pids = {parse_consumer(h.meta.consumer).pid for h in hops}  # type: ignore[union-attr]
    assert pids == {p.pid for p in procs}, pids
