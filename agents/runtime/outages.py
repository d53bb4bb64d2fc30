"""Riding out outages: a batch waits for a model endpoint or Redis to come back, it does not fail.

Every failure is classified (``agents.runtime.failures``). A transient one (the endpoint or Redis
is down, overloaded or out of memory) costs time, never a delivery attempt: the worker keeps
its batch (the heartbeat thread keeps the lease alive), backs off with jitter through the
endpoint's circuit breaker, and retries the failed step only, until the run's deadline or the
outage budget (``BATON_OUTAGE_BUDGET_S``) runs out; only then does the run fail, with a reason
that names the outage. A permanent failure (the model refused the request) dead-letters at once
with the real reason. Anything else may be a poison prompt: a failed batch is retried prompt by
prompt, and a failing prompt counts one delivery attempt, as before.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from ...broker.errors import BrokerError, is_transient
from ...broker.loop import backoff_delay
from ..backends import Generation
from .breaker import CircuitBreaker, OutageBudget
from .failures import classify, describe, retry_after
from .metrics import WorkerMetrics
from .waits import HeldWait, holding, running, waiting

__all__ = ["BatchOutcome", "CallHeld", "ModelCalls", "ride_out_redis"]

log = logging.getLogger("baton.worker")

T = TypeVar("T")
Call = Callable[[list[int]], Sequence[Generation]]
"""A model call for some prompts of a batch, given by index."""


class CallHeld(Exception):
    """A model call gave up before sending anything because the worker is stopping (e.g. while it
    waited for the rate limit): its prompts are held, left pending for another worker."""


@dataclass(slots=True)
class BatchOutcome:
    """What became of each prompt of a batch, by index."""

    generated: dict[int, Generation] = field(default_factory=dict)
    rejected: dict[int, str] = field(default_factory=dict)
    """Prompts whose run fails now: the model refused them, or the outage outlasted their budget."""
    poisoned: list[int] = field(default_factory=list)
    """Prompts that failed for no known reason: retried later, one delivery attempt each."""
    held: list[int] = field(default_factory=list)
    """Prompts still waiting on an outage when the worker was told to stop: left pending."""


class ModelCalls:
    """One role's model calls through outages, with the endpoint's circuit breaker."""

    def __init__(self, breaker: CircuitBreaker, *, budget_s: float, stopping: threading.Event,
                 metrics: WorkerMetrics) -> None:
        self.breaker = breaker
        self.budget_s = budget_s
        self.stopping = stopping
        self.metrics = metrics
        self._shown = False
        """This role's breaker gauges were set since the breaker last closed (they need closing too)."""

    def run(self, call: Call, deadlines: Sequence[float | None], held: HeldWait | None = None) -> BatchOutcome:
        """Generate for every prompt of a batch: ``call`` gets the indices of the prompts to
        generate for; ``deadlines`` are the runs' deadlines (epoch seconds), by index; ``held``:
        the entries the call holds, marked while it waits (``waits``), so a kill then uses no delivery."""
        out = BatchOutcome()
        budget = OutageBudget(self.budget_s)
        try:
            with holding(held):
                self._run(call, list(range(len(deadlines))), deadlines, budget, out)
        finally:
            if waited := budget.end():
                self.metrics.outage_waited(waited, "model")
        return out

    def _run(self, call: Call, todo: list[int], deadlines: Sequence[float | None], budget: OutageBudget,
             out: BatchOutcome) -> None:
        while todo:
            if self.stopping.is_set() and (budget.active or self.breaker.wait_s() > 0):
                out.held += todo
                return
            if (wait := self.breaker.wait_s()) > 0:
                waiting()
                self.stopping.wait(wait)
                continue
            self.breaker.allow()
            running()
            try:
                generations = call(todo)
            except CallHeld:
                out.held += todo
                return
            except Exception as exc:  # noqa: BLE001 - every failure is classified below
                todo = self._failed(call, exc, todo, deadlines, budget, out)
            else:
                self._answered()
                out.generated.update(zip(todo, generations, strict=True))
                return

    def probe(self, backend: object) -> bool:
        """With the breaker open, new work stays in the stream for healthy workers: wait out the
        back-off, probe the endpoint (``backend.probe()`` when it has one), say whether it answered."""
        self.stopping.wait(self.breaker.wait_s())
        if self.stopping.is_set() or not self.breaker.allow():
            return False
        try:
            probe = getattr(backend, "probe", None)
            if probe is not None:
                probe()
        except Exception as exc:  # noqa: BLE001 - classified: only an outage keeps the breaker open
            if classify(exc) == "transient":
                self.breaker.record_failure(describe(exc), retry_after(exc))
                self.metrics.breaker(True, self.breaker.opened_at)
                self._shown = True
                return False
        self._answered()
        return True

    def _failed(self, call: Call, exc: Exception, todo: list[int], deadlines: Sequence[float | None],
                budget: OutageBudget, out: BatchOutcome) -> list[int]:
        """Sort one failed call's prompts; return those to call again."""
        kind = classify(exc)
        if kind == "transient":
            self._outage(exc, budget)
            for i in todo:
                if reason := budget.exhausted(deadlines[i]):
                    out.rejected[i] = reason
            return [i for i in todo if i not in out.rejected]
        self._answered()
        if len(todo) > 1:  # one bad prompt must not fail its batch-mates: find it
            log.warning("batched model call failed (%s); retrying its %d prompts one by one", describe(exc), len(todo))
            for i in todo:
                self._run(call, [i], deadlines, budget, out)
        elif kind == "permanent":
            log.warning("the model refused a prompt: %s", describe(exc))
            out.rejected[todo[0]] = f"model refused the request: {describe(exc)}"
        else:
            log.warning("model call failed (%s)", describe(exc))
            out.poisoned.append(todo[0])
        return []

    def _outage(self, exc: Exception, budget: OutageBudget) -> None:
        was_open = self.breaker.is_open
        self.breaker.record_failure(describe(exc), retry_after(exc))
        budget.note(describe(exc))
        self.metrics.breaker(self.breaker.is_open, self.breaker.opened_at)
        self._shown = True
        if self.breaker.is_open and not was_open:
            log.warning("model endpoint %s is down (%s): circuit breaker open, batch held",
                        self.breaker.endpoint, describe(exc))
        else:
            log.info("model endpoint %s unavailable (%s); retrying in %.1fs", self.breaker.endpoint,
                     describe(exc), self.breaker.wait_s())

    def _answered(self) -> None:
        if not (self.breaker.is_open or self.breaker.failures or self._shown):  # closed, and its gauges say so
            return
        if self.breaker.is_open:
            log.warning("model endpoint %s is back after %.0f s", self.breaker.endpoint, self.breaker.open_seconds)
        self.breaker.record_success()
        self.metrics.breaker(False, None)
        self._shown = False


def ride_out_redis(step: Callable[[], T], *, budget_s: float, base_s: float, stopping: threading.Event,
                   metrics: WorkerMetrics, what: str) -> T:
    """Run ``step``, retrying it while Redis is out (OOM, READONLY, LOADING, unreachable...).

    The step must be safe to repeat (the handoff commit is: idempotency marker and owner check).
    Past the budget, or when the worker is stopping, the last error is raised: the entries stay
    pending for a later attempt.
    """
    budget = OutageBudget(budget_s, what="Redis")
    failures = 0
    try:
        while True:
            try:
                return step()
            except BrokerError as exc:
                if not is_transient(exc) or stopping.is_set():
                    raise
                budget.note(describe(exc))
                if budget.exhausted():
                    raise
                failures += 1
                delay = backoff_delay(failures, base_s)
                log.warning("%s waits for Redis (%s); retrying in %.1fs", what, describe(exc), delay)
                stopping.wait(delay)
    finally:
        if waited := budget.end():
            metrics.outage_waited(waited, "redis")
