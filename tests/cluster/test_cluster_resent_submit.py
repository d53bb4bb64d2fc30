"""On a Redis Cluster a submit is a MULTI under ``WATCH`` of the run's record: sent again after its run
went on (redis-py resends a command whose reply a failover lost), it writes nothing
(``tests/broker/test_resent_submit.py`` for one Redis)."""

from __future__ import annotations

from baton.broker import Keys, get_run, submit
from baton.broker.errors import Redis
from baton.protocol import Task


def test_a_submit_sent_again_after_its_run_went_on_changes_nothing(cclient: Redis, ckeys: Keys) -> None:
    task = Task(run_id="twice", role="planner", task="t")
    assert submit(cclient, ckeys, task) == "twice"
    stream = ckeys.run_stream(task.workflow, "planner", "twice", task.priority)
    first = cclient.xlen(stream), cclient.xlen(ckeys.events("twice"))
    cclient.hset(ckeys.run("twice"), mapping={"status": "done", "hops": 3})  # the run went on
    assert submit(cclient, ckeys, task) == "twice"
    assert (cclient.xlen(stream), cclient.xlen(ckeys.events("twice"))) == first
    assert ((get_run(cclient, ckeys, "twice") or {}).get("status"), first[0]) == ("done", 1)
    assert submit(cclient, ckeys, Task(run_id="other", role="planner", task="t")) == "other"
    assert (get_run(cclient, ckeys, "other") or {}).get("status") == "queued"
