"""Reserved interactive capacity against real worker processes (the echo model) and a real
redis-server: ``baton worker --reserve interactive`` serves interactive runs of tenants without a
backlog and leaves the batch lane and a flooding tenant to the shared workers; ``--nice`` lowers a
worker's CPU priority.

Assertions are about which worker served what (the consumer of each hop, by process id) and what
stayed unread, never about wall-clock times."""

from __future__ import annotations

import os

import redis

from baton.broker import Keys
from baton.broker.bulk import submit_many
from baton.broker.consumers import parse_consumer
from baton.broker.events import read_events
from baton.broker.reserve import PROBE
from baton.protocol import Task
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import all_done
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")


def _start(workers: Workers, client: redis.Redis, *args: str) -> set[int]:
    """One worker per role started with ``args``; their process ids."""
    workers.env.update({"BATON_MODEL": "echo"})
    procs = [workers.spawn(role, *args) for role in ROLES]
    workers.wait_ready(client)
    return {p.pid for p in procs}


def _servers(client: redis.Redis, keys: Keys, run_id: str) -> list[int]:
    """The process ids of the workers that started the run's hops, in order."""
    out = []
    for _, ev in read_events(client, keys, run_id, count=1000):
        if type(ev).__name__ == "HopStarted":
            name = parse_consumer(ev.consumer)  # type: ignore[attr-defined]
            assert name is not None
            out.append(name.pid)
    return out


def test_reserved_workers_serve_interactive_runs_and_leave_the_batch_lane_to_the_shared_ones(
        client: redis.Redis, keys: Keys, workers: Workers) -> None:
    batch = [Task(run_id=f"b{i:02d}", role="planner", task=f"batch {i}", priority="batch") for i in range(20)]
    submit_many(client, keys, batch)
    reserved = _start(workers, client, "--reserve", "interactive")
    submit_many(client, keys, [Task(run_id="i1", role="planner", task="mine")])
    wait_for(lambda: all_done(client, keys, ["i1"]), 120, "the interactive run to finish")
    assert set(_servers(client, keys, "i1")) <= reserved and len(_servers(client, keys, "i1")) == 3
    assert not any(_servers(client, keys, t.run_id) for t in batch)  # not one batch hop started
    group, = client.xinfo_groups(keys.stream("seed", "planner", 0, "batch"))
    assert group["lag"] == 20 and group["pending"] == 0
    shared = _start(workers, client)
    wait_for(lambda: all_done(client, keys, [t.run_id for t in batch]), 180, "the batch runs to finish")
    assert all(set(_servers(client, keys, t.run_id)) <= shared for t in batch)


def test_reserved_workers_leave_a_flooding_tenant_to_the_shared_workers(
        client: redis.Redis, keys: Keys, workers: Workers) -> None:
    flood = [Task(run_id=f"a{i:03d}", role="planner", task=f"flood {i}", tenant="acme") for i in range(300)]
    submit_many(client, keys, flood)
    reserved = _start(workers, client, "--reserve", "interactive")
    for n in range(3):  # globex's runs one at a time, with acme's 300 runs waiting all along
        submit_many(client, keys, [Task(run_id=f"g{n}", role="planner", task="mine", tenant="globex")])
        wait_for(lambda n=n: all_done(client, keys, [f"g{n}"]), 120, f"globex's run g{n} to finish")
        assert set(_servers(client, keys, f"g{n}")) <= reserved
    started = [t.run_id for t in flood if _servers(client, keys, t.run_id)]
    # a probe of PROBE tasks per role every few seconds: far from the 300 a shared worker would take
    assert PROBE <= len(started) <= 100, f"{len(started)} of acme's runs started on reserved workers"
    shared = _start(workers, client)
    wait_for(lambda: all_done(client, keys, [t.run_id for t in flood]), 300, "acme's flood to finish")
    by_shared = sum(1 for t in flood if set(_servers(client, keys, t.run_id)) & shared)
    assert by_shared >= 200  # the flood is the shared workers' work


def test_nice_lowers_a_workers_cpu_priority_while_it_serves_a_backlog_only(
        client: redis.Redis, keys: Keys, workers: Workers) -> None:
    workers.env.update({"BATON_MODEL": "echo"})
    proc = workers.spawn("planner", "--nice", "5")  # the planner alone: its handoffs wait at the researcher
    workers.wait_ready(client)
    base = os.getpriority(os.PRIO_PROCESS, proc.pid)
    backlog = [Task(run_id=f"a{i:04d}", role="planner", task=f"flood {i}", priority="batch") for i in range(2000)]
    submit_many(client, keys, backlog)
    wait_for(lambda: os.getpriority(os.PRIO_PROCESS, proc.pid) == min(19, base + 5), 120,
             "the worker's priority to drop while it serves the backlog", interval=0.005)
    researcher = keys.stream("seed", "researcher", 0, "batch")
    wait_for(lambda: client.xlen(researcher) == len(backlog), 300, "the backlog's first hops")
    submit_many(client, keys, [Task(run_id="i1", role="planner", task="mine")])
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, 120, "the lone run's first hop")
    assert os.getpriority(os.PRIO_PROCESS, proc.pid) == base  # its own priority back for a lone run


def test_a_bad_reserve_or_nice_is_a_one_line_error(worker_env: dict[str, str]) -> None:
    for args, message in ((["--reserve", "batch"], "--reserve takes interactive, not 'batch'"),
                          (["--nice", "20"], "Invalid value for '--nice'")):
        done = baton("worker", "planner", *args, env={**worker_env, "BATON_MODEL": "echo"})
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert "Traceback" not in done.stderr
    done = baton("worker", "planner", env={**worker_env, "BATON_MODEL": "echo", "BATON_WORKER_RESERVE": "all"})
    assert done.returncode == 1 and "bad value for BATON_WORKER_RESERVE" in done.stderr, done.stderr
