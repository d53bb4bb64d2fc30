"""The worker side of the shared rate limits (``ModelLimiter``) against a real Redis."""

from __future__ import annotations

import threading

import pytest
import redis

from baton.agents.backends import Generation
from baton.agents.runtime.metrics import WorkerMetrics
from baton.agents.runtime.outages import CallHeld
from baton.agents.runtime.ratelimits import ModelLimiter
from baton.agents.runtime.waits import HeldWait, holding
from baton.agents.settings import Settings
from baton.agents.workflow.loader import loads
from baton.agents.workflow.spec import RoleSpec, WorkflowError
from baton.broker import Entry, Keys
from baton.broker.ratelimit import usage
from baton.broker.waits import waited_deliveries
from tests.minutes import inside_a_minute
from tests.waiting import wait_for


def _limiter(client: redis.Redis, keys: Keys, stopping: threading.Event, *, rpm: int = 0, tpm: int = 0,
             role_rpm: int = 0) -> ModelLimiter:
    inside_a_minute(client)
    settings = Settings(model="echo", model_rpm=rpm, model_tpm=tpm)
    spec = RoleSpec(role="planner", agent="Alice", rpm=role_rpm)
    return ModelLimiter.for_role(client, keys, spec, settings, stopping=stopping, metrics=WorkerMetrics("planner"))


def test_role_limits_override_the_settings(client: redis.Redis, keys: Keys) -> None:
    limiter = _limiter(client, keys, threading.Event(), rpm=600, tpm=5000, role_rpm=30)
    assert (limiter.model, limiter.rpm, limiter.tpm) == ("echo", 30, 5000)
    assert not _limiter(client, keys, threading.Event()).enabled


def test_call_reserves_at_max_new_and_settles_with_the_real_count(client: redis.Redis, keys: Keys) -> None:
    limiter = _limiter(client, keys, threading.Event(), rpm=600, tpm=6000)
    out = limiter.call(3, 40, lambda: [Generation(text="x", new_tokens=5)] * 3)
    assert len(out) == 3
    (model,) = usage(client, keys)
    assert (model.model, model.requests, model.tokens) == ("echo", 3, 15)


def test_a_failed_call_gives_back_all_its_tokens(client: redis.Redis, keys: Keys) -> None:
    limiter = _limiter(client, keys, threading.Event(), tpm=6000)

    def boom() -> list[Generation]:
        raise RuntimeError("model down")

    with pytest.raises(RuntimeError):
        limiter.call(2, 40, boom)
    (model,) = usage(client, keys)
    assert (model.requests, model.tokens) == (2, 0)


def test_a_stop_ends_the_wait_and_holds_the_call(client: redis.Redis, keys: Keys) -> None:
    stopping = threading.Event()
    limiter = _limiter(client, keys, stopping, rpm=1)  # one request a minute: the second waits ~60 s
    limiter.acquire(1, 40)
    timer = threading.Timer(0.3, stopping.set)
    timer.start()
    with pytest.raises(CallHeld):
        limiter.acquire(1, 40)  # returns (raises) once stopping is set, long before the minute is up
    timer.join()
    (model,) = usage(client, keys)
    assert model.requests == 1


def test_a_wait_for_the_limit_marks_the_held_entries_so_a_kill_then_uses_no_delivery(
    client: redis.Redis, keys: Keys
) -> None:
    stopping = threading.Event()
    limiter = _limiter(client, keys, stopping, rpm=1)
    limiter.acquire(1, 40)
    entry = Entry(keys.stream("seed", "planner"), "5-0", b"{}", deliveries=1)
    held = HeldWait(client, keys, [entry], lambda step, what: step())

    def call() -> None:
        with holding(held), pytest.raises(CallHeld):
            limiter.acquire(1, 40)

    waiter = threading.Thread(target=call)
    waiter.start()
    wait_for(lambda: held.marked, 10, "the wait to mark the entry")
    stopping.set()  # a stop, like a kill, leaves the mark: that delivery did not run the entry
    waiter.join()
    again = Entry(entry.stream, entry.id, entry.data, deliveries=2)
    assert waited_deliveries(client, keys, [again, Entry(entry.stream, "6-0", b"{}", deliveries=2)]) == [1, 0]
    held.running()  # the entry goes on to run: its delivery counts again
    assert waited_deliveries(client, keys, [again]) == [0]


def test_tokens_are_counted_under_a_request_limit_alone(client: redis.Redis, keys: Keys) -> None:
    limiter = _limiter(client, keys, threading.Event(), rpm=600)
    limiter.call(2, 40, lambda: [Generation(text="x", new_tokens=7)] * 2)
    (model,) = usage(client, keys)
    assert (model.rpm, model.tpm, model.requests, model.tokens) == (600, 0, 2, 14)


def test_role_limits_come_from_the_workflow_file_and_must_not_be_negative() -> None:
    flow = 'name = "w"\nentry = "a"\n[[roles]]\nrole = "a"\nagent = "A"\nmodel = "echo"\nrpm = {rpm}\ntpm = 500\n'
    role = loads(flow.format(rpm=30)).role("a")
    assert (role.rpm, role.tpm) == (30, 500)
    with pytest.raises(WorkflowError, match="rpm"):
        loads(flow.format(rpm=-1))
