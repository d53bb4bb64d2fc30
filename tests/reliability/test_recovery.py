"""Crash recovery, leases, poison messages, retries, Redis restarts and graceful shutdown.

Workers are real ``baton worker`` processes killed with signals by pid; Redis is a real server,
killed and restarted on its data dir. Each test proves the recovery path it names actually ran.
"""

from __future__ import annotations

import json
import signal
import subprocess
import threading
import time
from typing import Any

import redis

from baton.agents.backends import EchoBackend
from baton.agents.backends.echo import CRASH_EXIT_CODE
from baton.agents.runtime.worker import Worker
from baton.agents.settings import Settings
from baton.agents.workflow.spec import SEED
from baton.broker import EmbeddedRedis, Keys, RoleStreams, get_run, live_workers, scratchpad, submit
from baton.protocol import DeadLetter, Result, Task, decode
from tests.cli import baton
from tests.conftest import Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")


def _pending(client: redis.Redis, stream: str, group: str) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = client.xpending_range(stream, group, min="-", max="+", count=100)
    return rows


def _results(client: redis.Redis, keys: Keys) -> list[Result]:
    msgs = [decode(f[b"msg"]) for _, f in client.xrange(keys.results())]
    return [m for m in msgs if isinstance(m, Result)]


def _log_of(workers: Workers, proc: subprocess.Popen[bytes]) -> str:
    index = workers.procs.index(proc)
    (path,) = workers.log_dir.glob(f"worker-*-{index}.log")
    return path.read_text(errors="replace")



def test_sigkilled_worker_task_is_taken_over_and_the_run_completes(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    victim = echo.spawn("planner", env={"BATON_ECHO_DELAY_S": "120"})
    echo.wait_ready(client, 1, timeout=180)
    run_id = submit(client, keys, Task(run_id="killed-mid-task", role="planner", task="survive me"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the victim to take the task")
    victim_name = _pending(client, stream, "planner")[0]["consumer"].decode()
    heir = echo.spawn("planner")
    for role in ROLES[1:]:
        echo.spawn(role)
    echo.wait_ready(client, 4, timeout=180)
    victim.send_signal(signal.SIGKILL)
    assert victim.wait() == -signal.SIGKILL
    rec = wait_runs(client, keys, [run_id], timeout=60)[run_id]
    assert rec["status"] == "done", echo.logs()
    (pad,) = scratchpad(client, keys, run_id, "Alice")
    assert pad.meta.consumer != victim_name
    assert f"entries from dead consumer {victim_name}" in _log_of(echo, heir)
    assert [r.run_id for r in _results(client, keys)] == [run_id]
    assert all(len(scratchpad(client, keys, run_id, a)) == 1 for a in ("Alice", "Bob", "Eve"))


def test_slow_but_alive_worker_keeps_its_task(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    lease = {"BATON_LEASE_MS": "3000"}
    slow = echo.spawn("planner", env={**lease, "BATON_ECHO_DELAY_S": "7"})
    echo.wait_ready(client, 1, timeout=180)
    run_id = submit(client, keys, Task(run_id="slow-run", role="planner", task="take your time"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the slow worker to take the task")
    slow_name = _pending(client, stream, "planner")[0]["consumer"].decode()
    other = echo.spawn("planner", env=lease)
    echo.wait_ready(client, 2, timeout=180)
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the slow worker's handoff",
               logs=echo.logs)
    (pad,) = scratchpad(client, keys, run_id, "Alice")
    assert pad.meta.consumer == slow_name  # the lease (XCLAIM JUSTID) kept it: never idle 3 s
    assert "reclaimed" not in _log_of(echo, other).replace("0 reclaimed", "")
    assert "was reclaimed by another worker" not in _log_of(echo, slow)
    assert _pending(client, stream, "planner") == []


def test_poison_message_ends_in_the_dlq_and_replays_once_fixed(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    run_id = submit(client, keys, Task(run_id="poison", role="planner", task="[[fault:crash]] poison"))
    crashes = 0
    proc = echo.spawn("planner")

    def dead_lettered() -> bool:
        nonlocal proc, crashes
        if proc.poll() is not None:
            assert proc.returncode == CRASH_EXIT_CODE, echo.logs()
            crashes += 1
            proc = echo.spawn("planner")
        return client.xlen(keys.dead()) == 1

    wait_for(dead_lettered, timeout=120, what="the poison message to be dead-lettered", logs=echo.logs)
    (entry_id, fields), = client.xrange(keys.dead())
    letter = decode(fields[b"msg"])
    assert isinstance(letter, DeadLetter)
    assert crashes == 3  # max_deliveries: three deliveries killed their worker, the fourth was refused
    assert letter.attempts == 4 and letter.role == "planner" and letter.run_id == run_id
    assert "delivered 4 times (max_deliveries=3)" in letter.reason
    assert decode(letter.original) == decode(client.xrange(keys.stream("seed", "planner"))[0][1][b"msg"])
    assert (get_run(client, keys, run_id) or {})["status"] == "failed"
    assert proc.poll() is None  # the worker that refused it lives on

    listed = baton("dlq", "list", "--json", env=echo.env)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["id"] == entry_id.decode() and row["attempts"] == 4
    shown = baton("dlq", "show", entry_id.decode(), env=echo.env)
    assert json.loads(shown.stdout)["original"] == letter.original

    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    echo.spawn("planner", env={"BATON_FAULT_INJECTION": "0"})  # the fix: markers are plain text now
    replayed = baton("dlq", "replay", entry_id.decode(), env=echo.env)
    assert replayed.returncode == 0 and "replayed" in replayed.stdout, replayed.stderr
    assert client.xlen(keys.dead()) == 0
    wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the replayed task's handoff",
               logs=echo.logs)
    assert (get_run(client, keys, run_id) or {})["status"] == "running"
    assert len(scratchpad(client, keys, run_id, "Alice")) == 1
    missing = baton("dlq", "show", "1-1", env=echo.env)
    assert missing.returncode == 1 and missing.stderr.count("\n") == 1 and "no dead letter" in missing.stderr


def test_worker_reads_its_own_pending_entries_first(client: redis.Redis, keys: Keys, redis_url: str) -> None:
    s = Settings.from_env({}, redis_url=redis_url, block_ms=100, lease_ms=600_000, janitor_interval_s=0)
    w = Worker(s, SEED, "planner", backend=EchoBackend())
    run_id = submit(client, keys, Task(run_id="own-pending", role="planner", task="t"))
    # the entry was delivered to this consumer name before (a previous life of the process)
    (entry,) = RoleStreams(client, keys, "seed", "planner", w.consumer).read(pending=False, count=5, block_ms=100)
    thread = threading.Thread(target=w.run)
    thread.start()
    try:
        wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the pending entry's handoff")
    finally:
        w.stopping.set()
        thread.join(30)
    assert w.processed == 1 and w.reclaimed == 0
    (pad,) = scratchpad(client, keys, run_id, "Alice")
    assert pad.meta.consumer == w.consumer
    assert client.xpending(keys.stream("seed", "planner"), "planner")["pending"] == 0


def test_redelivered_messages_yield_no_duplicates(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    for role in ROLES:
        echo.spawn(role)
    run_id = submit(client, keys, Task(run_id="once-only", role="planner", task="once"))
    assert wait_runs(client, keys, [run_id], timeout=60)[run_id]["status"] == "done", echo.logs()
    for role in ("planner", "summarizer"):  # the same messages again, as a redelivery after a crash
        (_, fields), = client.xrange(keys.stream("seed", role))
        client.xadd(keys.stream("seed", role), fields)

    def settled() -> bool:
        return all(
            client.xpending(keys.stream("seed", r), r)["pending"] == 0
            and client.xinfo_groups(keys.stream("seed", r))[0]["lag"] == 0 for r in ROLES
        )

    wait_for(settled, what="the redeliveries to be consumed", logs=echo.logs)
    assert [r.run_id for r in _results(client, keys)] == [run_id]
    assert client.xlen(keys.stream("seed", "researcher")) == 1
    assert all(len(scratchpad(client, keys, run_id, a)) == 1 for a in ("Alice", "Bob", "Eve"))
    # the worker logs a skipped redelivery after its commit acked it: wait for both lines
    wait_for(lambda: echo.logs().count("had already been handed off") >= 2, what="both skips logged", logs=echo.logs)
    assert echo.logs().count("had already been handed off") == 2


def test_transient_model_error_is_retried_then_succeeds(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    for role in ROLES:
        echo.spawn(role)
    run_id = submit(client, keys, Task(run_id="flaky", role="planner", task="[[fault:raise:2]] flaky"))
    rec = wait_runs(client, keys, [run_id], timeout=60)[run_id]
    assert rec["status"] == "done", echo.logs()
    assert client.xlen(keys.dead()) == 0
    logs = echo.logs()
    # every role saw the marker (echo passes it on): two failures each, the third delivery worked
    assert logs.count("injected transient model error 1/2") == 3
    assert logs.count("injected transient model error 2/2") == 3
    assert [r.run_id for r in _results(client, keys)] == [run_id]


def test_workers_survive_a_redis_restart_and_nothing_is_lost(
    private_redis: EmbeddedRedis, private_client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    env = {"REDIS_URL": private_redis.url, "BATON_ECHO_DELAY_S": "0.2", "BATON_BATCH_SIZE": "1"}
    procs = [echo.spawn(role, env=env) for role in ROLES]
    echo.wait_ready(private_client, 3, timeout=180)
    run_ids = [submit(private_client, keys, Task(run_id=f"restart-{i}", role="planner", task=f"t{i}"))
               for i in range(8)]

    def done_count() -> int:
        try:
            return sum((get_run(private_client, keys, r) or {}).get("status") == "done" for r in run_ids)
        except redis.ConnectionError:
            return 0

    wait_for(lambda: done_count() >= 2, what="two runs done before the restart", logs=echo.logs)
    private_redis.kill()  # SIGKILL; an outage of a few seconds; then the same port and data dir (AOF)
    time.sleep(3)  # the sleep is the test: the outage workers must ride out
    private_redis.start()
    wait_for(lambda: done_count() == len(run_ids), timeout=90, what="every run after the restart",
               logs=echo.logs)
    assert all(p.poll() is None for p in procs), echo.logs()
    assert sorted(r.run_id for r in _results(private_client, keys)) == sorted(run_ids)
    for run_id in run_ids:
        assert all(len(scratchpad(private_client, keys, run_id, a)) == 1 for a in ("Alice", "Bob", "Eve"))
    assert echo.logged("Redis unavailable") or echo.logged("waits for Redis"), echo.logs()


def test_sigterm_finishes_the_task_in_flight_and_exits_0(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    proc = echo.spawn("planner", env={"BATON_ECHO_DELAY_S": "3"})
    echo.wait_ready(client, 1, timeout=180)
    submit(client, keys, Task(run_id="graceful", role="planner", task="finish me"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the task in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0, echo.logs()
    assert client.xlen(keys.stream("seed", "researcher")) == 1
    assert _pending(client, stream, "planner") == []
    assert live_workers(client, keys) == []
    assert client.xinfo_consumers(stream, "planner") == []


def test_second_signal_exits_at_once_leaving_the_task_pending(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    proc = echo.spawn("planner", env={"BATON_ECHO_DELAY_S": "120"})
    echo.wait_ready(client, 1, timeout=180)
    submit(client, keys, Task(run_id="impatient", role="planner", task="never mind"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the task in flight")
    proc.send_signal(signal.SIGTERM)
    wait_for(lambda: echo.logged("finishing in-flight work"), what="the first signal to be handled")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 1
    assert len(_pending(client, stream, "planner")) == 1  # left for another worker to reclaim
    assert client.xlen(keys.stream("seed", "researcher")) == 0


def test_work_outlasting_the_grace_period_is_left_pending(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    proc = echo.spawn("planner", env={"BATON_ECHO_DELAY_S": "120", "BATON_SHUTDOWN_GRACE_S": "1"})
    echo.wait_ready(client, 1, timeout=180)
    submit(client, keys, Task(run_id="overdue", role="planner", task="too slow"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the task in flight")
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(60) == 1
    assert echo.logged("did not finish within the 1s grace period"), echo.logs()
    assert len(_pending(client, stream, "planner")) == 1


def test_a_paused_worker_that_wakes_up_late_cannot_commit_a_second_copy(
    client: redis.Redis, keys: Keys, echo: Workers
) -> None:
    zombie = echo.spawn("planner", env={"BATON_ECHO_DELAY_S": "2"})
    echo.wait_ready(client, 1, timeout=180)
    run_id = submit(client, keys, Task(run_id="zombie", role="planner", task="who finishes?"))
    stream = keys.stream("seed", "planner")
    wait_for(lambda: len(_pending(client, stream, "planner")) == 1, what="the task in flight")
    zombie.send_signal(signal.SIGSTOP)  # a long GC pause or a partition: no heartbeat, no lease renewal
    try:
        heir = echo.spawn("planner")
        wait_for(lambda: client.xlen(keys.stream("seed", "researcher")) == 1, what="the heir's handoff", logs=echo.logs)
    finally:
        zombie.send_signal(signal.SIGCONT)
    wait_for(lambda: "was reclaimed by another worker" in _log_of(echo, zombie),
               what="the zombie's late commit to be refused", logs=echo.logs)
    assert client.xlen(keys.stream("seed", "researcher")) == 1
    (pad,) = scratchpad(client, keys, run_id, "Alice")
    assert pad.meta.consumer in _log_of(echo, heir)
    assert zombie.poll() is None


def test_a_failing_prompt_does_not_take_its_batch_mates_down(client: redis.Redis, keys: Keys, echo: Workers) -> None:
    good = [submit(client, keys, Task(run_id=f"mate-{i}", role="planner", task=f"fine {i}")) for i in range(2)]
    bad = submit(client, keys, Task(run_id="always-fails", role="planner", task="[[fault:raise:99]] broken"))
    echo.spawn("planner", env={"BATON_BATCH_SIZE": "8"})  # the three arrive in one batch
    wait_for(lambda: client.xlen(keys.dead()) == 1 and client.xlen(keys.stream("seed", "researcher")) == 2,
               what="the batch-mates' handoffs and the bad prompt's dead letter", logs=echo.logs)
    assert echo.logged("retrying its 3 prompts one by one"), echo.logs()
    handed = {decode(f[b"msg"]).run_id for _, f in client.xrange(keys.stream("seed", "researcher"))}
    assert handed == set(good)
    (_, fields), = client.xrange(keys.dead())
    assert decode(fields[b"msg"]).run_id == bad  # type: ignore[union-attr]
