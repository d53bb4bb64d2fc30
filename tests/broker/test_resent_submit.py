"""A submit sent twice writes its run once. redis-py sends a command again when the connection broke
before the reply came (its retry on ``ConnectionError``): after a failover, the first send may have
landed, and the run gone on, before the second arrives. The second must not reset the run (its
status back to ``queued``) nor queue its first task again (which the planner's idempotency marker
then drops, leaving the run queued for good: how the Sentinel failover test once failed in CI)."""

from __future__ import annotations

import pytest
import redis

from baton.broker import Keys, get_run, submit
from baton.protocol import Task


@pytest.mark.parametrize("tenant", ["", "acme"], ids=["function", "tenant-multi"])
def test_a_submit_sent_again_after_its_run_went_on_changes_nothing(client: redis.Redis, keys: Keys,
                                                                   tenant: str) -> None:
    task = Task(run_id="twice", role="planner", task="t", tenant=tenant)
    assert submit(client, keys, task) == "twice"
    stream = keys.run_stream(task.workflow, "planner", "twice", task.priority, tenant)
    first = client.xlen(stream), client.zcard(keys.runs()), client.xlen(keys.events("twice"))
    client.hset(keys.run("twice"), mapping={"status": "done", "role": "", "hops": 3})  # the run went on
    assert submit(client, keys, task) == "twice"  # the same submit, sent again
    assert (client.xlen(stream), client.zcard(keys.runs()), client.xlen(keys.events("twice"))) == first
    record = get_run(client, keys, "twice") or {}
    assert (record.get("status"), record.get("hops")) == ("done", "3")


def test_a_new_run_id_is_still_written(client: redis.Redis, keys: Keys) -> None:
    assert submit(client, keys, Task(run_id="one", role="planner", task="t")) == "one"
    assert submit(client, keys, Task(run_id="two", role="planner", task="t")) == "two"
    assert client.xlen(keys.stream("seed", "planner")) == 2
    assert {(get_run(client, keys, r) or {}).get("status") for r in ("one", "two")} == {"queued"}
