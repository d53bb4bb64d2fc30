"""Per-client caches of the broker stay bounded: per client (LRU) and in clients (weak keys)."""

from __future__ import annotations

import gc

import redis

from baton.broker import Keys, submit
from baton.broker import runs as broker_runs
from baton.broker.cache import PerClient
from baton.protocol import Task


def test_per_client_memo_is_an_lru_of_bounded_size(redis_url: str) -> None:
    memo: PerClient[int, int] = PerClient(maxsize=3)
    client = redis.Redis.from_url(redis_url)
    made: list[int] = []

    def make(i: int) -> int:
        made.append(i)
        return i * i

    for i in range(100):
        assert memo.get(client, i, lambda i=i: make(i)) == i * i  # type: ignore[misc]
    assert memo.size(client) == 3
    assert memo.get(client, 99, lambda: make(-1)) == 99 * 99  # remembered: not made again
    assert memo.get(client, 0, lambda: make(0)) == 0  # evicted long ago: made again
    assert made[-1] == 0 and -1 not in made
    memo.forget(client, 0)
    assert memo.get(client, 0, lambda: make(0)) == 0 and made.count(0) == 3
    client.close()


def test_per_client_memos_go_away_with_their_clients(redis_url: str) -> None:
    memo: PerClient[str, bool] = PerClient(maxsize=10)
    for _ in range(50):
        c = redis.Redis.from_url(redis_url)
        memo.get(c, "x", lambda: True)
        c.close()
        del c
    gc.collect()
    assert memo.clients() == 0


def test_submit_remembers_a_bounded_number_of_groups_per_client(client: redis.Redis, keys: Keys) -> None:
    bound = broker_runs._groups_made.maxsize
    for i in range(bound + 50):
        submit(client, keys, Task(run_id=f"r{i}", role=f"role{i}", task="t"))
    assert broker_runs._groups_made.size(client) == bound
    assert client.xinfo_groups(keys.stream("seed", "role0"))[0]["name"] == b"role0"
    client.delete(keys.stream("seed", "role0"))
    submit(client, keys, Task(run_id="again", role="role0", task="t"))  # evicted: the group is made again
    assert client.xinfo_groups(keys.stream("seed", "role0"))[0]["name"] == b"role0"
