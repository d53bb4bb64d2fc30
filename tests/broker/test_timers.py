"""Waking durable timers (``broker/timers.py``, ``lua/wait.lua``) against a real Redis: however many
tickers wake the same due waits at once, each wait is woken once, even when a woken task parks its
next wait (under the same index member) before a slower ticker gets to it."""

from __future__ import annotations

import json
import threading
import time
from collections import Counter

import redis

from baton.broker import Keys, submit
from baton.broker.entry import Entry
from baton.broker.journal import hop_key
from baton.broker.timers import DueWait, WaitPark, decode_wait, due_waits, list_waits, park_waits, wake_due, wake_waits
from baton.protocol import Task, decode
from tests.waiting import wait_for

WF, ROLE = "timers", "napper"


def _stream(keys: Keys, run_id: str) -> str:
    return keys.run_stream(WF, ROLE, run_id, "interactive")


def _read(client: redis.Redis, keys: Keys, run_ids: list[str], block_ms: int | None = None) -> list[Entry]:
    """Entries of the runs' task stream read by consumer ``c`` (what a worker would run)."""
    streams = {s: ">" for s in {_stream(keys, r) for r in run_ids}}
    got = client.xreadgroup(keys.group(ROLE), "c", streams, count=1000, block=block_ms)  # type: ignore[arg-type]
    return [Entry(stream=s.decode(), id=i.decode(), data=f[b"msg"]) for s, items in got or [] for i, f in items]


def _park(client: redis.Redis, keys: Keys, entry: Entry, *, seq: int, until: float | None, name: str = "") -> int:
    assert entry.data is not None
    task = decode(entry.data)
    assert isinstance(task, Task)
    park = WaitPark(entry=entry, task=task, role=ROLE, kind="signal" if name else "sleep", seq=seq, fp=f"fp{seq}",
                    hop=hop_key(ROLE, 0, 0), name=name, until=until)
    return park_waits(client, keys, keys.group(ROLE), "c", [park])[0]


def _sleeping(client: redis.Redis, keys: Keys, n: int, due: float) -> list[str]:
    """``n`` runs whose first hop parked a sleep due at ``due``."""
    run_ids = [submit(client, keys, Task(run_id=f"nap-{i}", role=ROLE, task="t", workflow=WF)) for i in range(n)]
    entries = _read(client, keys, run_ids)
    assert len(entries) == n
    assert [_park(client, keys, e, seq=0, until=due) for e in entries] == [1] * n
    return run_ids


def _woken(client: redis.Redis, keys: Keys, run_id: str) -> list[dict[str, object]]:
    events = [json.loads(f[b"ev"]) for _, f in client.xrange(keys.events(run_id))]
    return [e for e in events if e["type"] == "woken"]


def test_a_stale_ticker_does_not_wake_the_next_wait_of_a_woken_task(client: redis.Redis, keys: Keys) -> None:
    now = time.time()
    run_ids = _sleeping(client, keys, 5, now - 1)
    index = keys.timers(WF, ROLE, 0)
    slow = due_waits(client, keys, index, now=now)  # ticker B reads the due sleeps...
    assert len(slow) == 5
    assert wake_due(client, keys, index, now=now) == 5  # ...ticker A wakes them first...
    resumed = _read(client, keys, run_ids)
    assert len(resumed) == 5
    for entry in resumed:  # ...and each handler, replayed, parks its next wait (a signal, no timeout)
        assert _park(client, keys, entry, seq=1, until=None, name="go") == 1
    assert wake_waits(client, keys, index, slow, now=now) == 0  # B's read is stale: it wakes nothing
    assert _read(client, keys, run_ids) == []  # no task went back on its stream twice
    waits = list_waits(client, keys, limit=1000)
    assert sorted(w.run_id for w in waits) == run_ids and {w.kind for w in waits} == {"signal"}
    for run_id in run_ids:
        assert [(e["kind"], e["why"]) for e in _woken(client, keys, run_id)] == [("sleep", "timer")]
        assert client.hget(keys.journal(run_id, resumed[0].id), "1") is None  # the signal wait holds no result


def test_a_ticker_that_reads_the_next_waits_record_does_not_wake_it_before_it_is_due(
        client: redis.Redis, keys: Keys) -> None:
    """A ticker reads the due members, then their records (two round trips). Between the two, another
    ticker wakes the sleep and the replayed handler parks its next wait (due in an hour) under the
    same member: the record the slow ticker reads is the new wait's, so only the due score tells."""
    now = time.time()
    run_ids = _sleeping(client, keys, 3, now - 1)
    index = keys.timers(WF, ROLE, 0)
    members = [(d.run_id, d.msg_id) for d in due_waits(client, keys, index, now=now)]  # B's first read
    assert wake_due(client, keys, index, now=now) == 3  # A wakes them
    for entry in _read(client, keys, run_ids):
        assert _park(client, keys, entry, seq=1, until=now + 3600, name="go") == 1
    late = [DueWait(r, m, decode_wait(client.hgetall(keys.timer(r, m)))) for r, m in members]  # B's second read
    assert all(d.record is not None and d.record.kind == "signal" for d in late)
    assert wake_waits(client, keys, index, late, now=now) == 0  # not due: B wakes nothing
    assert _read(client, keys, run_ids) == []
    for run_id in run_ids:
        assert [(e["kind"], e["why"]) for e in _woken(client, keys, run_id)] == [("sleep", "timer")]


def test_concurrent_tickers_wake_each_wait_once(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    """Four ticker threads and a worker thread that re-parks every woken task at once (its next wait
    due in an hour): every sleep is woken exactly once, and no wait is woken before it is due (the
    old wake step, ZREM alone, woke re-parked waits from a stale read: 1 to 25 of 200 twice)."""
    run_ids = _sleeping(client, keys, 200, time.time() - 1)
    index = keys.timers(WF, ROLE, 0)
    stop = threading.Event()
    woke: Counter[str] = Counter()
    lock = threading.Lock()

    def ticker() -> None:
        c = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            n = wake_due(c, keys, index)
            with lock:
                woke["calls"] += n
        c.close()

    def worker() -> None:
        c = redis.Redis.from_url(redis_url)
        while not stop.is_set():
            for entry in _read(c, keys, run_ids, block_ms=100):
                _park(c, keys, entry, seq=1, until=time.time() + 3600, name="go")
        c.close()

    threads = [threading.Thread(target=ticker) for _ in range(4)] + [threading.Thread(target=worker)]
    for t in threads:
        t.start()

    def settled() -> bool:
        waits = list_waits(client, keys, limit=1000)
        return len(waits) == len(run_ids) and all(w.kind == "signal" for w in waits)

    try:
        wait_for(settled, 60, "every sleep woken and its task's next wait parked")
        time.sleep(0.3)  # the tickers keep going a while over the re-parked waits
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    per_run = {r: [(e["kind"], e["why"]) for e in _woken(client, keys, r)] for r in run_ids}
    assert {r: w for r, w in per_run.items() if w != [("sleep", "timer")]} == {}
    assert woke["calls"] == len(run_ids)
    waits = list_waits(client, keys, limit=1000)
    assert sorted(w.run_id for w in waits) == sorted(run_ids) and {w.kind for w in waits} == {"signal"}
