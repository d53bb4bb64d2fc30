"""Threads against a real Redis: each policy under racing submits, the release at a run's end (once,
however often it is reported), the janitor's sweep, the TTL and deletion. Runs end here by writing
their records as a worker's commit does; tests/e2e/test_threads.py runs real workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from baton.agents.settings import Settings
from baton.agents.submit import submit_run
from baton.agents.workflow import SEED
from baton.broker import Keys, Retention, cancel_run, run_record
from baton.broker.cancel import delete_thread
from baton.broker.ends import runs_ended
from baton.broker.janitor import Janitor
from baton.broker.threads import ThreadBusy, get_thread, list_threads, release, submit_turn, sweep, thread_run_id
from baton.protocol import ProtocolError, Task, ThreadPolicy

RACERS = 12


@pytest.fixture(params=[1, 4], ids=["one-partition", "four-partitions"])
def tkeys(request: pytest.FixtureRequest) -> Keys:
    return Keys(partitions=request.param)


def _stream_len(client: redis.Redis, keys: Keys, thread: str) -> int:
    """First tasks published in the thread's partition (every run of the thread lives there)."""
    return int(client.xlen(keys.stream(SEED.name, SEED.entry, keys.thread_partition(thread))))


def _race(redis_url: str, keys: Keys, thread: str, policy: ThreadPolicy, n: int = RACERS) -> list[str | Exception]:
    """``n`` submits to ``thread`` from ``n`` connections, released together."""
    settings = Settings(redis_url=redis_url)
    gate = threading.Barrier(n)

    def one(i: int) -> str | Exception:
        c = redis.Redis.from_url(redis_url)
        try:
            gate.wait()
            return submit_run(c, keys, settings, SEED, f"message {i}", thread=thread, thread_policy=policy)
        except ThreadBusy as exc:
            return exc
        finally:
            c.close()

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _end(client: redis.Redis, keys: Keys, run_id: str, result: str = "ok") -> None:
    """End ``run_id`` as a last hop's commit does, then report its end."""
    client.hset(keys.run(run_id), mapping={"status": "done", "result": result})
    runs_ended(client, keys, [run_id])


def test_enqueue_runs_racing_messages_one_at_a_time_in_order(redis_url: str, client: redis.Redis, tkeys: Keys) -> None:
    ids = [r for r in _race(redis_url, tkeys, "chat-1", "enqueue") if isinstance(r, str)]
    assert len(set(ids)) == RACERS
    assert {tkeys.partition(r) for r in ids} == {tkeys.thread_partition("chat-1")}
    info = get_thread(client, tkeys, "chat-1")
    assert info is not None and info.active in ids and sorted([info.active, *info.queued]) == sorted(ids)
    assert _stream_len(client, tkeys, "chat-1") == 1  # one turn started, the rest wait
    order = [info.active, *info.queued]
    for i, run_id in enumerate(order):
        assert get_thread(client, tkeys, "chat-1").active == run_id  # type: ignore[union-attr]
        _end(client, tkeys, run_id, f"reply {i}")
        runs_ended(client, tkeys, [run_id])  # reported twice (a redelivery): changes nothing
        assert _stream_len(client, tkeys, "chat-1") == min(i + 2, RACERS)
    done = get_thread(client, tkeys, "chat-1")
    assert done is not None and done.active == "" and done.queued == []
    assert [(t.run_id, t.result, t.status) for t in done.turns] == [(r, f"reply {i}", "done")
                                                                     for i, r in enumerate(order)]
    assert [t.task for t in done.turns] == [run_record(client, tkeys, r).task for r in order]  # type: ignore[union-attr]


def test_reject_lets_exactly_one_racing_message_in(redis_url: str, client: redis.Redis, tkeys: Keys) -> None:
    got = _race(redis_url, tkeys, "chat-2", "reject")
    ids = [r for r in got if isinstance(r, str)]
    refused = [r for r in got if isinstance(r, ThreadBusy)]
    assert len(ids) == 1 and len(refused) == RACERS - 1
    assert {r.active for r in refused} == set(ids)
    assert _stream_len(client, tkeys, "chat-2") == 1
    assert sum(1 for p in range(tkeys.partitions) for _ in client.zrange(tkeys.runs(p), 0, -1)) == 1  # no records
    _end(client, tkeys, ids[0])
    again = submit_run(client, tkeys, Settings(redis_url=redis_url), SEED, "later", thread="chat-2",
                       thread_policy="reject")
    assert get_thread(client, tkeys, "chat-2").active == again  # type: ignore[union-attr]


@pytest.mark.parametrize("policy", ["interrupt", "rollback"])
def test_interrupt_and_rollback_leave_one_turn_running(redis_url: str, client: redis.Redis, tkeys: Keys,
                                                      policy: ThreadPolicy) -> None:
    first = submit_run(client, tkeys, Settings(redis_url=redis_url), SEED, "first", thread="chat-3")
    ids = [r for r in _race(redis_url, tkeys, "chat-3", policy) if isinstance(r, str)]
    assert len(ids) == RACERS
    info = get_thread(client, tkeys, "chat-3")
    assert info is not None and info.queued == []
    statuses = {r: run_record(client, tkeys, r).status for r in [first, *ids]}  # type: ignore[union-attr]
    assert [r for r, s in statuses.items() if s == "queued"] == [info.active]
    assert sorted(s for r, s in statuses.items() if r != info.active) == ["cancelled"] * RACERS
    assert _stream_len(client, tkeys, "chat-3") == RACERS + 1  # each started (and all but one were cancelled)
    cancelled = {t.run_id for t in info.turns}
    if policy == "interrupt":
        assert cancelled == set(statuses) - {info.active} and {t.status for t in info.turns} == {"cancelled"}
    else:
        assert info.turns == []  # rolled back: the cancelled turns leave nothing
    for r in statuses:
        runs_ended(client, tkeys, [r])  # the halts of the cancelled turns change nothing
    assert get_thread(client, tkeys, "chat-3").active == info.active  # type: ignore[union-attr]


def test_a_cancelled_turn_releases_the_thread_and_a_cancelled_waiting_turn_is_skipped(
        redis_url: str, client: redis.Redis, keys: Keys) -> None:
    submit: Callable[[str], str] = lambda text: submit_run(  # noqa: E731
        client, keys, Settings(redis_url=redis_url), SEED, text, thread="chat-4")
    a, b, c = submit("a"), submit("b"), submit("c")
    cancel_run(client, keys, b)  # waiting: it never starts
    cancel_run(client, keys, a)  # running: cancelled, its turn kept, the next waiting turn starts
    info = get_thread(client, keys, "chat-4")
    assert info is not None and info.active == c and info.queued == []
    assert [(t.run_id, t.status) for t in info.turns] == [(a, "cancelled")]
    assert _stream_len(client, keys, "chat-4") == 2


def test_the_janitor_releases_a_thread_whose_turn_ended_unseen(redis_url: str, client: redis.Redis,
                                                               keys: Keys) -> None:
    settings = Settings(redis_url=redis_url)
    a = submit_run(client, keys, settings, SEED, "a", thread="chat-5")
    b = submit_run(client, keys, settings, SEED, "b", thread="chat-5")
    client.hset(keys.run(a), mapping={"status": "failed", "error": "boom"})  # a worker died before runs_ended
    assert sweep(client, keys) == 1
    info = get_thread(client, keys, "chat-5")
    assert info is not None and info.active == b and [(t.status, t.error) for t in info.turns] == [("failed", "boom")]
    assert sweep(client, keys) == 0
    assert Janitor(client, keys).sweep().threads_released == 0
    # a submit that finds the running turn ended releases it first
    client.hset(keys.run(b), "status", "done")  # ended, its end not reported
    c = submit_run(client, keys, settings, SEED, "c", thread="chat-5", thread_policy="reject")
    info = get_thread(client, keys, "chat-5")
    assert info is not None and info.active == c and [t.run_id for t in info.turns] == [a, b]
    assert release(client, keys, [a, b, c]) == []


def test_thread_state_expires_with_the_retention_and_delete_cancels_its_turns(redis_url: str,
                                                                               client: redis.Redis) -> None:
    keys = Keys(retention=Retention(record_ttl_s=600))
    settings = Settings(redis_url=redis_url)
    a = submit_run(client, keys, settings, SEED, "a", thread="chat-6")
    b = submit_run(client, keys, settings, SEED, "b", thread="chat-6")
    assert 590 < int(client.ttl(keys.thread("chat-6"))) <= 600
    assert 590 < int(client.ttl(keys.thread_queue("chat-6"))) <= 600
    assert [t.thread_id for t in list_threads(client, keys)] == ["chat-6"]
    deleted = get_thread(client, keys, "chat-6")
    assert delete_thread(client, keys, "chat-6") == deleted
    assert get_thread(client, keys, "chat-6") is None and list_threads(client, keys) == []
    assert [run_record(client, keys, r).status for r in (a, b)] == ["cancelled", "cancelled"]  # type: ignore[union-attr]


def test_bad_thread_ids_and_policies_are_refused_before_anything_is_written(redis_url: str, client: redis.Redis,
                                                                           keys: Keys) -> None:
    settings = Settings(redis_url=redis_url)
    with pytest.raises(ProtocolError, match="thread id"):
        submit_run(client, keys, settings, SEED, "x", thread="no:colons")
    with pytest.raises(ProtocolError, match="thread policy"):
        submit_run(client, keys, settings, SEED, "x", thread="ok", thread_policy="later")  # type: ignore[arg-type]
    assert client.dbsize() == 0


def test_a_retried_turn_whose_first_call_landed_is_not_written_again(client: redis.Redis, keys: Keys) -> None:
    task = Task(run_id=thread_run_id(keys, "chat-7"), role=SEED.entry, task="once")
    assert submit_turn(client, keys, task, "chat-7", "enqueue") == "started"
    submit_turn(client, keys, task, "chat-7", "enqueue")  # the retry after a lost reply
    info = get_thread(client, keys, "chat-7")
    assert info is not None and info.active == task.run_id and info.queued == []
    assert _stream_len(client, keys, "chat-7") == 1
