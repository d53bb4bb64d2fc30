"""The results streams read through the broker: ``ResultsReader`` and the key census benchmarks take."""

from __future__ import annotations

import redis

from baton.broker import Keys, append_events, submit
from baton.broker.results import ResultsReader
from baton.broker.stats import key_census
from baton.protocol import Error, Queued, Result, Task, encode, new_id


def test_the_reader_follows_every_partition_and_steps_over_a_malformed_entry(client: redis.Redis) -> None:
    keys = Keys("rr", partitions=3)
    reader = ResultsReader(client, keys, start="0-0")
    ids = [keys.run_id_in(p) for p in range(3)]
    client.xadd(keys.results(1), {"msg": b"not json"})
    messages = [Result(run_id=ids[0], role="summarizer", output="ok"),
                Result(run_id=ids[1], role="summarizer", output="ok"),
                Error(run_id=ids[2], role="planner", reason="boom")]
    for msg in messages:
        client.xadd(keys.results(keys.partition(msg.run_id)), {"msg": encode(msg)})
    got = reader.read(100)
    assert sorted((type(m).__name__, m.run_id) for m in got) == sorted(
        [("Result", ids[0]), ("Result", ids[1]), ("Error", ids[2])])
    assert reader.arrived == 4
    assert reader.read(10) == [] and reader.arrived == 0  # from where it stopped


def test_the_key_census_counts_kinds_and_event_entries(client: redis.Redis) -> None:
    keys = Keys("census")
    runs = [submit(client, keys, Task(run_id=new_id(), role="planner", task="t", workflow="seed")) for _ in range(2)]
    append_events(client, keys, runs[0], [Queued(run_id=runs[0], at=1.0, role="planner", hop=0, workflow="seed",
                                                 task="t")])
    census = key_census(client, keys)
    assert census.kinds["run"] == 2 and census.kinds["runs"] == 1 and census.kinds["wf"] == 1
    assert (census.event_logs, census.events_len) == (2, 3)
