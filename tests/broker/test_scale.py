"""Costs that must not grow with history: the runs index is emptied after retention however big it
is, idempotency markers follow their setting, bulk submits write what single submits write, and
waiting for many runs reads each record a bounded number of times."""

from __future__ import annotations

import threading
import time

import redis

from baton.broker import Keys, Retention, get_run, submit
from baton.broker.bulk import submit_many
from baton.broker.janitor import FORGET_PAGE, FORGET_PAGES, Janitor
from baton.broker.runs import wait_for_runs
from baton.protocol import Result, Task, encode
from tests.conftest import Workers
from tests.waiting import wait_for


def _kept(keys: Keys) -> Keys:
    """Records kept a minute, no results retention."""
    return Keys(keys.prefix, keys.partitions, Retention(record_ttl_s=60, results_retention_s=0))


def test_one_sweep_forgets_every_expired_run_behind_live_ones(client: redis.Redis, keys: Keys) -> None:
    expired = 3 * FORGET_PAGE + 7
    client.zadd(keys.runs(), {f"gone-{i}": 1.0 + i for i in range(expired)})
    live = [f"live-{i}" for i in range(FORGET_PAGE + 1)]  # older than the expired ones, records still there
    client.zadd(keys.runs(), dict.fromkeys(live, 0.5))
    for run_id in live:
        client.hset(keys.run(run_id), "status", "review")
    report = Janitor(client, _kept(keys), streams=[]).sweep(now=10_000.0)
    assert report.runs_forgotten == expired
    assert sorted(m.decode() for m in client.zrange(keys.runs(), 0, -1)) == sorted(live)


def test_a_sweep_checks_a_bounded_part_of_the_index_and_the_next_goes_on_from_there(
    client: redis.Redis, keys: Keys
) -> None:
    budget = FORGET_PAGE * FORGET_PAGES
    live = [f"live-{i}" for i in range(budget)]  # a backlog older than the retention, records alive
    client.zadd(keys.runs(), {run_id: 1.0 + i for i, run_id in enumerate(live)})
    pipe = client.pipeline(transaction=False)
    for run_id in live:
        pipe.hset(keys.run(run_id), "status", "queued")
    pipe.execute()
    client.zadd(keys.runs(), {f"gone-{i}": 2.0 * budget + i for i in range(5)})
    janitor = Janitor(client, _kept(keys), streams=[])
    assert janitor.sweep(now=10 * budget).runs_forgotten == 0  # the budget went on the live backlog
    assert janitor.sweep(now=10 * budget).runs_forgotten == 5  # ... the next sweep goes on from there
    assert janitor.sweep(now=10 * budget).runs_forgotten == 0  # ... and the one after starts over
    assert client.zcard(keys.runs()) == budget


def test_cancelled_set_is_cleared_in_pages(client: redis.Redis, keys: Keys) -> None:
    client.sadd(keys.cancelled(), *[f"gone-{i}" for i in range(2 * FORGET_PAGE + 3)], "alive")
    client.hset(keys.run("alive"), "status", "cancelled")
    report = Janitor(client, keys, streams=[]).sweep()
    assert report.cancelled_forgotten == 2 * FORGET_PAGE + 3
    assert client.smembers(keys.cancelled()) == {b"alive"}


def test_markers_follow_the_marker_ttl_setting(client: redis.Redis, keys: Keys, workers: Workers) -> None:
    env = {"BATON_MODEL": "echo", "BATON_MARKER_TTL_S": "77", "BATON_RECORD_TTL_S": "77"}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env=env)
    run_id = submit(client, keys, Task(run_id="marked", role="planner", task="t"))
    wait_for(lambda: (get_run(client, keys, run_id) or {}).get("status") == "done", what="the run",
             logs=workers.logs)
    markers = list(client.scan_iter(match=keys.done(run_id, "*"), count=1000))
    assert len(markers) == 3
    assert all(0 < client.ttl(m) <= 77 for m in markers)


def test_bulk_submit_writes_what_submit_writes(client: redis.Redis, keys: Keys) -> None:
    one = submit(client, keys, Task(run_id="single", role="planner", task="t", created_at=5.0))
    many = submit_many(client, keys, (Task(run_id=f"bulk-{i}", role="planner", task="t", created_at=5.0)
                                      for i in range(7)), batch=3)
    assert many == [f"bulk-{i}" for i in range(7)]
    assert client.xlen(keys.stream("seed", "planner")) == 8
    assert client.zcard(keys.runs()) == 8
    single, bulk = get_run(client, keys, one), get_run(client, keys, many[-1])
    assert single and bulk and {**single, "run_id": "x"} == {**bulk, "run_id": "x"}
    assert client.xlen(keys.events(many[-1])) == client.xlen(keys.events(one)) == 1


def test_waiting_for_many_runs_reads_each_record_a_bounded_number_of_times(client: redis.Redis, keys: Keys) -> None:
    runs = 150
    ids = submit_many(client, keys, (Task(run_id=f"w-{i}", role="planner", task="t") for i in range(runs)))

    def finish() -> None:
        for run_id in ids:
            client.hset(keys.run(run_id), "status", "done")
            client.xadd(keys.results(), {"msg": encode(Result(run_id=run_id, role="summarizer", output="o"))})
            time.sleep(0.002)

    client.config_resetstat()
    finisher = threading.Thread(target=finish)
    finisher.start()
    done = wait_for_runs(client, keys, ids, timeout=120)
    finisher.join()
    assert set(done) == set(ids)
    reads = int(client.info("commandstats")["cmdstat_hgetall"]["calls"])
    assert reads <= 3 * runs
