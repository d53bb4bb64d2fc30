"""A worker killed while it waits out a model outage is not a poison message (real worker processes).

Each worker is a real ``baton worker`` process SIGKILLed by pid; the model is a real HTTP server
that is down (connection refused) or holds requests unanswered (``tests.flaky_model``). A kill
while the worker waits with its batch (circuit breaker open, backing off) must not use one of the
message's ``max_deliveries``; a kill while the model call runs must, so a message that kills its
worker every time it really runs still dead-letters after ``max_deliveries`` such attempts.
"""

from __future__ import annotations

import subprocess

import redis

from baton.broker import Keys, get_run, submit
from baton.protocol import DeadLetter, Task, decode
from tests.conftest import Workers
from tests.flaky_model import FlakyModelServer
from tests.waiting import wait_for

ROLES = ("planner", "researcher", "summarizer")


def _dead(client: redis.Redis, keys: Keys) -> list[DeadLetter]:
    return [m for _, f in client.xrange(keys.dead()) if isinstance(m := decode(f[b"msg"]), DeadLetter)]


def _status(client: redis.Redis, keys: Keys, run_id: str) -> str:
    return (get_run(client, keys, run_id) or {}).get("status", "")


def _log(workers: Workers, proc: subprocess.Popen[bytes]) -> str:
    (path,) = workers.log_dir.glob(f"worker-*-{workers.procs.index(proc)}.log")
    return path.read_text(errors="replace")


def _env(model: FlakyModelServer, max_deliveries: int) -> dict[str, str]:
    return {"BATON_MODEL": model.url, "BATON_MAX_DELIVERIES": str(max_deliveries),
            "BATON_BREAKER_THRESHOLD": "1", "BATON_BREAKER_CAP_S": "0.5"}


def _kill_while_waiting(client: redis.Redis, keys: Keys, workers: Workers, env: dict[str, str], marks: int) -> None:
    """Start a planner, let it take the held task and wait out the outage (it retried once after a
    back-off and marked its delivery as waiting: ``marks`` deliveries marked so far), then SIGKILL it.
    Fails at once if the task was dead-lettered instead. (The log line comes before the mark: a kill
    between the two is a kill before the wait.)"""
    proc = workers.spawn("planner", env=env)
    waits = keys.waits("seed", "planner")
    wait_for(lambda: ("unavailable (" in _log(workers, proc) and client.hlen(waits) >= marks) or _dead(client, keys),
             120, "the worker to wait out the outage with the task", logs=workers.logs)
    assert _dead(client, keys) == [], "a kill while waiting used up the deliveries"
    proc.kill()
    proc.wait()


def test_kills_while_the_model_is_down_use_no_delivery_and_the_run_finishes(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    flaky_model.stop()
    env = _env(flaky_model, max_deliveries=1)
    run_id = submit(client, keys, Task(run_id="waited", role="planner", task="Explain supervised learning."))
    for kill in (1, 2, 3):  # three kills, each while waiting: with max_deliveries 1 each would be the last
        _kill_while_waiting(client, keys, workers, env, marks=kill)
    (pending,) = client.xpending_range(keys.stream("seed", "planner"), "planner", min="-", max="+", count=10)
    assert pending["times_delivered"] == 3

    flaky_model.start()
    for role in ROLES:
        workers.spawn(role, env=env)
    wait_for(lambda: _status(client, keys, run_id) in {"done", "failed"}, 120, "the run to end", logs=workers.logs)
    assert _status(client, keys, run_id) == "done", workers.logs()
    assert _dead(client, keys) == []
    assert flaky_model.answered == 3  # one answer per role: nothing ran while the model was down


def test_a_message_that_kills_its_worker_while_it_runs_still_dead_letters_after_max_deliveries(
    client: redis.Redis, keys: Keys, workers: Workers, flaky_model: FlakyModelServer
) -> None:
    flaky_model.stop()
    env = _env(flaky_model, max_deliveries=2)
    run_id = submit(client, keys, Task(run_id="poison", role="planner", task="Explain supervised learning."))
    for kill in (1, 2):  # two deliveries spent waiting: not counted
        _kill_while_waiting(client, keys, workers, env, marks=kill)

    flaky_model.hold(from_request=1)  # the model is up, and each call now "kills" its worker
    flaky_model.start()
    try:
        for ran in (1, 2):  # two deliveries that really ran the message: counted
            proc = workers.spawn("planner", env=env)
            wait_for(lambda: flaky_model.completions >= ran or _dead(client, keys), 120,  # noqa: B023
                     "the worker to call the model", logs=workers.logs)
            assert _dead(client, keys) == [], "dead-lettered before max_deliveries attempts really ran it"
            proc.kill()
            proc.wait()
        workers.spawn("planner", env=env)
        wait_for(lambda: _dead(client, keys), 120, "the dead letter", logs=workers.logs)
    finally:
        flaky_model.release()
    (dead,) = _dead(client, keys)
    assert dead.run_id == run_id and dead.attempts == 5
    assert "delivered 5 times, 2 of them spent waiting on an outage or a limit (max_deliveries=2)" in dead.reason
    assert flaky_model.completions == 2  # it really ran exactly max_deliveries times
    assert _status(client, keys, run_id) == "failed"
