"""A finished run's record and events are final: an entry naming it (well-formed or not) is dead-lettered with
the reason, and the run's status, result, scratchpads and event log stay as they were (real echo workers)."""

from __future__ import annotations

import redis

from baton.broker import Keys, get_run, scratchpad, submit
from baton.broker.dlq import list_dead
from baton.protocol import Task, encode
from tests.conftest import Workers
from tests.waiting import wait_for


def test_entries_naming_a_finished_run_are_dead_lettered_and_change_nothing(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    for role in ("planner", "researcher", "summarizer"):
        echo.spawn(role)
    run_id = submit(client, keys, Task(run_id="finished", role="planner", task="once"))
    wait_for(lambda: (get_run(client, keys, run_id) or {}).get("status") == "done", what="the run", logs=echo.logs)
    before = get_run(client, keys, run_id)
    events = client.xlen(keys.events(run_id))
    pads = scratchpad(client, keys, run_id, "Alice")
    stream = keys.run_stream("seed", "planner", run_id)
    client.xadd(stream, {"msg": encode(Task(run_id=run_id, role="planner", task="again"))})
    client.xadd(stream, {"msg": b'{"type": "task", "run_id": "finished", "id": "x1", "task": 5}'})  # malformed

    def reasons() -> list[str]:
        return [d.letter.reason for d in list_dead(client, keys)]

    wait_for(lambda: len(reasons()) == 2, what="both entries dead-lettered", logs=echo.logs)
    assert sum("has ended: its record and events are final" in r for r in reasons()) == 2, reasons()
    assert get_run(client, keys, run_id) == before  # no second result, no `error` on a done record
    assert client.xlen(keys.events(run_id)) == events
    assert scratchpad(client, keys, run_id, "Alice") == pads
    assert client.xpending(stream, "planner")["pending"] == 0
