"""Real workers against a Sentinel group ride over a failover: every run finishes, none is lost.

Worker processes (echo model, a short delay per message so runs are in flight) use the
``redis+sentinel://`` URL, as does the submitting client. Mid-run the primary is failed over,
once with ``SENTINEL FAILOVER`` (a planned switch) and once by SIGKILLing the primary process.
Duplicate results (a hop committed on the old primary, not replicated, done again) are counted
and reported, not hidden; with ``BATON_WAIT_REPLICAS=1`` there should be none.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator

import pytest
import redis

from baton.broker import Keys, connect, get_run
from baton.client import Client
from baton.protocol import Result, decode
from tests.conftest import Workers
from tests.sentinel.conftest import SentinelGroup
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")
RUNS = 30


@pytest.fixture
def sentinel_client(sentinel_group: SentinelGroup) -> Iterator[redis.Redis]:
    """A baton client connection (``broker.connect``) through the sentinels."""
    c = connect(sentinel_group.url)
    yield c
    c.close()


def _done(client: redis.Redis, keys: Keys, run_ids: list[str]) -> int:
    try:
        return sum((get_run(client, keys, r) or {}).get("status") == "done" for r in run_ids)
    except (redis.ConnectionError, redis.TimeoutError):
        return 0


def _result_counts(client: redis.Redis, keys: Keys) -> Counter[str]:
    msgs = [decode(f[b"msg"]) for _, f in client.xrange(keys.results())]
    return Counter(m.run_id for m in msgs if isinstance(m, Result))


@pytest.mark.parametrize("how", ["sentinel-failover", "kill-primary"])
def test_runs_survive_a_failover(how: str, sentinel_group: SentinelGroup, sentinel_client: redis.Redis,
                                 workers: Workers) -> None:
    env = {"REDIS_URL": sentinel_group.url, "BATON_MODEL": "echo", "BATON_ECHO_DELAY_S": "0.1",
           "BATON_BATCH_SIZE": "1", "BATON_WAIT_REPLICAS": "1", "BATON_WAIT_TIMEOUT_MS": "200"}
    procs = [workers.spawn(role, env=env) for role in ROLES]
    workers.wait_ready(sentinel_client, 3, timeout=120)
    keys = Keys()
    with Client(sentinel_group.url) as api:
        run_ids = [api.submit(f"task {i}").id for i in range(RUNS)]
        assert api.redis.wait(1, 5000) == 1  # the submissions are on the replica before the switch
    wait_for(lambda: _done(sentinel_client, keys, run_ids) >= 3, timeout=60, what="runs done before the failover",
             logs=workers.logs)
    old = sentinel_group.primary_port()
    new = sentinel_group.failover() if how == "sentinel-failover" else sentinel_group.kill_primary()
    assert new != old
    in_flight = RUNS - _done(sentinel_client, keys, run_ids)
    wait_for(lambda: _done(sentinel_client, keys, run_ids) == RUNS, timeout=120, what="every run after the failover",
             logs=workers.logs)
    assert all(p.poll() is None for p in procs), workers.logs()
    counts = _result_counts(sentinel_client, keys)
    lost = [r for r in run_ids if counts[r] == 0]
    duplicates = sum(n - 1 for n in counts.values() if n > 1)
    print(f"{how}: {RUNS} runs, {in_flight} not done at the failover, lost {len(lost)}, duplicate results {duplicates}")
    assert lost == []
    assert set(counts) == set(run_ids)
    with redis.Redis(port=new) as direct:
        assert direct.info("replication")["role"] == "master"
