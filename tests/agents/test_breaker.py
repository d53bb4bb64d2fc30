"""The circuit breaker and the outage budget: pure logic driven by a hand-turned clock."""

from __future__ import annotations

import random

import pytest
from prometheus_client import generate_latest

from baton.agents.runtime.breaker import BreakerState, CircuitBreaker, OutageBudget
from baton.agents.runtime.metrics import WorkerMetrics
from baton.agents.settings import Settings


class Clock:
    """A clock that moves only when told to."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def breaker(clock: Clock, *, threshold: int = 3, base_s: float = 0.5, cap_s: float = 30.0,
            jitter: float = 0.5) -> CircuitBreaker:
    """A breaker on ``clock`` whose wall clock reads 1.7e9 more."""
    return CircuitBreaker("http://model/v1", threshold=threshold, base_s=base_s, cap_s=cap_s, jitter=jitter,
                          clock=clock, wall=lambda: clock.now + 1.7e9, rng=random.Random(7))


def test_opens_after_threshold_failures_probes_and_closes() -> None:
    clock = Clock()
    b = breaker(clock, threshold=3, base_s=1.0, cap_s=8.0)
    assert b.state is BreakerState.CLOSED and b.allow() and b.opened_at is None
    b.record_failure("connection refused")
    b.record_failure("connection refused")
    assert b.state is BreakerState.CLOSED and not b.is_open
    assert not b.allow() and 0 < b.wait_s() <= 2.0  # closed, but the failed step waits its back-off
    clock.advance(b.wait_s())
    assert b.allow()
    b.record_failure("connection refused")
    assert b.state is BreakerState.OPEN and b.is_open and b.opened_at == clock.now + 1.7e9
    assert not b.allow() and b.last_error == "connection refused"
    clock.advance(b.wait_s())
    assert b.allow() and b.state is BreakerState.HALF_OPEN  # the probe
    b.record_failure("HTTP 503: busy")
    assert b.state is BreakerState.OPEN and not b.allow()
    clock.advance(b.wait_s())
    assert b.allow() and b.state is BreakerState.HALF_OPEN
    opened = b.opened_at
    clock.advance(0.5)
    b.record_success()
    assert b.state is BreakerState.CLOSED and b.failures == 0 and b.opened_at is None and b.allow()
    assert opened is not None and b.open_seconds == pytest.approx(clock.now - (opened - 1.7e9))


def test_back_off_doubles_with_jitter_and_is_capped() -> None:
    b = breaker(Clock(), base_s=0.5, cap_s=4.0, jitter=0.5)
    for failures, full in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (5, 4.0), (40, 4.0)]:
        delays = [b.backoff_s(failures) for _ in range(50)]
        assert all(full * 0.5 <= d <= full for d in delays), (failures, delays)
        assert len(set(delays)) > 1  # jittered
    exact = breaker(Clock(), base_s=0.5, cap_s=4.0, jitter=0.0)
    assert [exact.backoff_s(n) for n in (1, 2, 3, 4)] == [0.5, 1.0, 2.0, 4.0]


def test_an_endpoint_back_after_a_long_outage_is_found_within_a_few_seconds() -> None:
    """A worker's breaker (its default settings) keeps probing a down endpoint every few seconds,
    however long the outage: ten minutes of refused probes do not stretch the back-off to where a
    recovery goes unnoticed for half a minute (or is missed when it is short)."""
    s = Settings.from_env({})
    clock = Clock()
    b = CircuitBreaker("http://model/v1", threshold=s.breaker_threshold, base_s=s.retry_backoff_s,
                       cap_s=s.breaker_cap_s, clock=clock, wall=clock, rng=random.Random(3))
    back_at = clock.now + 600.0
    probes: list[float] = []
    while True:
        clock.advance(b.wait_s())
        assert b.allow()
        probes.append(clock.now)
        if clock.now >= back_at:
            b.record_success()
            break
        b.record_failure("connection refused")
    assert b.state is BreakerState.CLOSED and b.open_seconds >= 600.0
    assert probes[-1] - back_at <= 4.0  # found back within BATON_BREAKER_CAP_S
    assert max(later - earlier for earlier, later in zip(probes, probes[1:], strict=False)) <= 4.0
    assert len(probes) >= 600 / 4.0


def test_retry_after_lengthens_the_wait() -> None:
    clock = Clock()
    b = breaker(clock, base_s=0.5, cap_s=4.0)
    b.record_failure("HTTP 429", retry_after=20.0)
    assert b.wait_s() == 20.0
    clock.advance(19.9)
    assert not b.allow()
    clock.advance(0.1)
    assert b.allow()


def test_open_seconds_add_up_over_outages() -> None:
    clock = Clock()
    b = breaker(clock, threshold=1)
    b.record_failure("down")
    clock.advance(10)
    assert b.open_seconds == 10  # the current outage counts
    b.record_success()
    clock.advance(100)
    b.record_failure("down")
    clock.advance(5)
    b.record_success()
    assert b.open_seconds == 15


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="threshold=0"):
        CircuitBreaker("m", threshold=0)
    with pytest.raises(ValueError, match="cap_s"):
        CircuitBreaker("m", base_s=5, cap_s=1)


def test_outage_budget_fails_the_run_after_the_budget() -> None:
    clock = Clock()
    budget = OutageBudget(600, clock=clock)
    assert not budget.active and budget.exhausted() == "" and budget.remaining_s() == 600
    budget.note("connection refused")
    clock.advance(300)
    budget.note("connection refused")  # the outage clock keeps its start
    assert budget.exhausted() == "" and budget.remaining_s() == 300 and budget.give_up_at() == 1600.0
    clock.advance(300)
    assert budget.exhausted() == "model endpoint unreachable for 600 s: connection refused"
    assert budget.end() == 600 and not budget.active and budget.exhausted() == ""


def test_outage_budget_ends_at_the_deadline_when_that_comes_first() -> None:
    clock = Clock()
    budget = OutageBudget(600, what="Redis", clock=clock)
    assert budget.remaining_s(deadline=1030.0) == 30
    budget.note("Redis is out of memory (OOM)")
    assert budget.give_up_at(deadline=1030.0) == 1030.0 and budget.give_up_at(deadline=5000.0) == 1600.0
    clock.advance(29)
    assert budget.exhausted(deadline=1030.0) == ""
    clock.advance(1)
    assert budget.exhausted(deadline=1030.0) == (
        "Redis unreachable for 30 s (the run's deadline passed): Redis is out of memory (OOM)")
    assert budget.exhausted(deadline=5000.0) == ""  # another run of the batch waits on


def test_settings_carry_the_outage_budget() -> None:
    assert Settings.from_env({}).outage_budget_s == 600.0
    assert Settings.from_env({"BATON_OUTAGE_BUDGET_S": "30"}).outage_budget_s == 30.0


def test_metrics_show_the_breaker_and_outage_seconds() -> None:
    m = WorkerMetrics("planner")
    text = generate_latest(m.registry).decode()
    assert 'baton_model_breaker_open{role="planner"} 0.0' in text
    assert 'baton_outage_seconds_total{dependency="model",role="planner"} 0.0' in text
    m.breaker(True, opened_at=1_700_000_000.0)
    m.outage_waited(2.5)
    m.outage_waited(1.0, "redis")
    text = generate_latest(m.registry).decode()
    assert 'baton_model_breaker_open{role="planner"} 1.0' in text
    assert 'baton_model_breaker_opened_at{role="planner"} 1.7e+09' in text
    assert 'baton_outage_seconds_total{dependency="model",role="planner"} 2.5' in text
    assert 'baton_outage_seconds_total{dependency="redis",role="planner"} 1.0' in text
    m.breaker(False)
    assert 'baton_model_breaker_open{role="planner"} 0.0' in generate_latest(m.registry).decode()
    with pytest.raises(ValueError, match="dependency"):
        m.outage_waited(1.0, "disk")
