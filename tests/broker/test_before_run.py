"""The read before a batch runs, on a real Redis: one round trip for the cancelled flags, the
scratchpads, the budget flags and the ``hop_started`` events of the runs that go on."""

from __future__ import annotations

import redis

from baton.broker import Keys, before_run, cancel_run, read_events, submit
from baton.protocol import HopStarted, Queued, Task, encode_event


def _started(run_id: str, msg: str) -> bytes:
    return encode_event(HopStarted(run_id=run_id, role="planner", agent="Alice", hop=0, msg_id=msg, consumer="c"))


def test_hop_started_is_written_for_runs_that_go_on_and_not_for_cancelled_ones(client: redis.Redis) -> None:
    keys = Keys(partitions=4)
    for run_id in ("a", "b", "c"):
        submit(client, keys, Task(run_id=run_id, role="planner", task="t"))
    cancel_run(client, keys, "b")
    runs = ["a", "b", "c", "a"]  # two tasks of one run in the batch
    read = before_run(client, keys, runs, [("c", "Alice")],
                      started=[_started("a", "m1"), _started("b", "m2"), b"", _started("a", "m3")])
    assert read.cancelled == [False, True, False, False]
    assert read.limited == [False] * 4 and read.pads == [[]]
    started = {r: [e.msg_id for _, e in read_events(client, keys, r) if isinstance(e, HopStarted)]
               for r in ("a", "b", "c")}
    assert started == {"a": ["m1", "m3"], "b": [], "c": []}  # c had no event to write
    assert [type(e) for _, e in read_events(client, keys, "a")] == [Queued, HopStarted, HopStarted]


def test_without_events_the_read_is_the_plain_one_and_survives_a_script_flush(client: redis.Redis) -> None:
    keys = Keys()
    submit(client, keys, Task(run_id="x", role="planner", task="t"))
    assert before_run(client, keys, ["x"], []).cancelled == [False]
    before_run(client, keys, ["x"], [], started=[_started("x", "m1")])
    client.script_flush()  # a restarted server: the script is loaded again
    assert before_run(client, keys, ["x"], [], started=[_started("x", "m2")]).cancelled == [False]
    assert [e.msg_id for _, e in read_events(client, keys, "x") if isinstance(e, HopStarted)] == ["m1", "m2"]
