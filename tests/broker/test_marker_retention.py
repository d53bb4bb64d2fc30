"""Idempotency markers and join hashes are bounded by the run records' lifetime (found by ``make soak``).

With ``BATON_RECORD_TTL_S`` set, every hop's ``done`` marker and every fan-in's ``join`` hash used to
live a week regardless: Redis grew by a few keys per run for as long as the soak ran.
"""

from __future__ import annotations

import redis

from baton.broker import Keys, Retention, submit
from baton.broker.retention import MARKER_TTL_S
from baton.protocol import Task
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs

WORKFLOW = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")


def _ttls(client: redis.Redis, pattern: str) -> list[int]:
    return [int(client.ttl(k)) for k in client.scan_iter(match=pattern, count=1000)]


def _fanout_runs(client: redis.Redis, keys: Keys, workers: Workers, record_ttl_s: int) -> None:
    env = {"BATON_MODEL": "echo", "BATON_RECORD_TTL_S": str(record_ttl_s)}
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, "--workflow", WORKFLOW, env=env)
    workers.wait_ready(client, 3)
    kept = Keys(keys.prefix, keys.partitions, Retention(record_ttl_s=record_ttl_s))
    run_ids = [submit(client, kept, Task(run_id=f"ttl-{i}", role="planner", task=f"Topic {i}",
                                         workflow="research_fanout")) for i in range(3)]
    recs = wait_runs(client, keys, run_ids, timeout=120)
    assert all(r["status"] == "done" for r in recs.values()), (recs, workers.logs())


def test_markers_and_join_hashes_expire_with_the_run_record(client: redis.Redis, keys: Keys,
                                                            workers: Workers) -> None:
    _fanout_runs(client, keys, workers, record_ttl_s=60)
    markers, joins = _ttls(client, f"{keys.prefix}:*:done:*"), _ttls(client, f"{keys.prefix}:*:join:*")
    assert len(markers) == 3 * 5 and len(joins) == 3  # planner, 3 researcher parts, summarizer; one join a run
    assert all(0 < t <= 60 for t in markers + joins), (markers, joins)
    assert all(0 < t <= 60 for t in _ttls(client, f"{keys.prefix}:*:run:*"))


def test_markers_keep_their_long_lifetime_when_records_are_kept(client: redis.Redis, keys: Keys,
                                                                workers: Workers) -> None:
    _fanout_runs(client, keys, workers, record_ttl_s=0)
    ttls = _ttls(client, f"{keys.prefix}:*:done:*") + _ttls(client, f"{keys.prefix}:*:join:*")
    assert ttls and all(MARKER_TTL_S - 600 < t <= MARKER_TTL_S for t in ttls), ttls
