"""Fair dispatch and ``max_running`` against real worker processes (the echo model) and a real
redis-server: a tenant's single run is not starved by another tenant's backlog, and a tenant never
runs more runs at once than its cap, the excess waiting queued (not failed) until it starts.

Assertions are about order (which runs ended before which, how many overlapped, by the Redis-clock
ids of the runs' events), never about wall-clock times."""

from __future__ import annotations

import redis

from baton.broker import Keys
from baton.broker.bulk import submit_many
from baton.broker.events import read_events
from baton.broker.tenants import publish_limits
from baton.protocol import Task
from baton.protocol.tenants import TenantLimits
from tests.conftest import Workers
from tests.e2e.helpers import all_done
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")


def _start(workers: Workers, client: redis.Redis, **env: str) -> None:
    workers.env.update({"BATON_MODEL": "echo", **env})
    for role in ROLES:
        workers.spawn(role)
    workers.wait_ready(client)


def _span(client: redis.Redis, keys: Keys, run_id: str) -> tuple[tuple[int, int], tuple[int, int]]:
    """The Redis-clock ids of a run's first ``hop_started`` event and of its ``done`` event."""
    events = read_events(client, keys, run_id, count=1000)
    started = next(eid for eid, ev in events if type(ev).__name__ == "HopStarted")
    done = next(eid for eid, ev in events if type(ev).__name__ == "Done")
    return _id(started), _id(done)


def _id(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def test_a_tenants_run_is_not_starved_by_another_tenants_backlog(
        client: redis.Redis, keys: Keys, workers: Workers) -> None:
    flood = [Task(run_id=f"a{i:04d}", role="planner", task=f"flood {i}", tenant="acme") for i in range(300)]
    submit_many(client, keys, flood)
    submit_many(client, keys, [Task(run_id="g1", role="planner", task="mine", tenant="globex")])
    _start(workers, client, BATON_BATCH_SIZE="8")
    wait_for(lambda: all_done(client, keys, ["g1"]), 120, "globex's run to finish")
    _, g_done = _span(client, keys, "g1")
    wait_for(lambda: all_done(client, keys, [t.run_id for t in flood]), 300, "acme's flood to finish")
    before = sum(1 for t in flood if _span(client, keys, t.run_id)[1] < g_done)
    # first-come would finish all 300 of acme's runs first; fair reads take globex's with the first batches
    assert before <= 40, f"{before} of acme's 300 runs finished before globex's single run"


def test_max_running_caps_a_tenants_runs_and_queues_the_rest(
        client: redis.Redis, keys: Keys, workers: Workers) -> None:
    publish_limits(client, keys, {"acme": TenantLimits(max_running=2)})
    runs = [Task(run_id=f"a{i:02d}", role="planner", task=f"capped {i}", tenant="acme") for i in range(12)]
    submit_many(client, keys, runs)
    assert client.llen(keys.tenant_queue("acme")) == 10  # queued, not failed
    assert all(client.hget(keys.run(t.run_id), "status") == b"queued" for t in runs)
    _start(workers, client)
    wait_for(lambda: all_done(client, keys, [t.run_id for t in runs]), 300, "every capped run to finish")
    # each run's events are a stream of their own: ids of two streams order by their millisecond
    # only (the sequence part counts within one stream), and within one millisecond an end sorts
    # before a start (the next run is admitted by the end of the one before)
    points = sorted((p[0], kind) for t in runs for kind, p in zip((1, 0), _span(client, keys, t.run_id), strict=True))
    running, most = 0, 0
    for _, kind in points:
        running += 1 if kind else -1
        most = max(most, running)
    assert most == 2  # never more than the cap at once, and the cap was used
    # each end releases its slot one step after the write that ended the run (broker/ends.py)
    wait_for(lambda: not client.exists(keys.tenant_running("acme")) and client.llen(keys.tenant_queue("acme")) == 0,
             30, "the last runs' slots released and the queue empty")
