"""The shared services of one role in a worker process, handed to its stages and drivers.

``RoleRuntime`` holds what every stage of a role needs and what more than one driver uses: the
role's Redis face (streams, keys, client), its run guard, steps, budgets, events, metrics and
counters, the model endpoint's breaker, outage riding and rate limiter, the entries in flight
(the heartbeat renews their leases), the commit (with the replica wait) and riding out Redis.
Stages get it when they are built; drivers (``Worker``, ``MultiRoleWorker``) own it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TypeVar

from ...broker import Entry, Handoff, Outcome, Redis, RoleStreams, connect, consumer_name
from ...broker.commit import Committer
from ...broker.ends import runs_ended
from ...broker.replication import ReplicaWait
from ...protocol import TERMINAL_STATUSES
from ..backends import ModelBackend
from ..settings import Settings
from ..workflow.spec import RoleSpec, Workflow
from .breaker import CircuitBreaker
from .budgets import BudgetGate
from .events import EventWriter
from .guards import RunGuard
from .handoff import HandoffBuilder
from .logs import bind
from .metrics import WorkerMetrics
from .outages import ModelCalls, ride_out_redis
from .ratelimits import ModelLimiter
from .steps import RoleSteps
from .waits import HeldWait

T = TypeVar("T")

__all__ = ["Counts", "InFlight", "RoleRuntime"]

log = logging.getLogger("baton.worker")


@dataclass(slots=True)
class Counts:
    """What a role's worker did since it started (the heartbeat and the shutdown line show them)."""

    processed: int = 0
    failed: int = 0
    dead_lettered: int = 0
    reclaimed: int = 0


class InFlight:
    """The entries a role is working on; the heartbeat thread renews their leases."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[Entry] = []

    @contextmanager
    def holding(self, entries: Sequence[Entry]) -> Iterator[None]:
        """``entries`` are in flight inside the block."""
        self.hold(entries)
        try:
            yield
        finally:
            self.release()

    def hold(self, entries: Sequence[Entry]) -> None:
        with self._lock:
            self._entries = list(entries)

    def release(self) -> None:
        with self._lock:
            self._entries = []

    def entries(self) -> list[Entry]:
        """A copy of the entries in flight (any thread)."""
        with self._lock:
            return list(self._entries)


class RoleRuntime:
    """The services of one role of ``workflow`` in this process."""

    def __init__(self, settings: Settings, workflow: Workflow, role: str, *, backend: ModelBackend | None = None,
                 client: Redis | None = None, stopping: threading.Event | None = None) -> None:
        self.settings = settings
        self.workflow = workflow
        self.spec: RoleSpec = workflow.role(role)
        self.keys = settings.keys()
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        self.consumer = consumer_name(role)
        self.streams = RoleStreams(self.client, self.keys, workflow.name, role, self.consumer,
                                   settings.worker_partition_list(), options=settings.read_options)
        self.partition_of = {s: n.partition for s in self.streams.streams if (n := self.keys.parse_stream(s))}
        self.backend = backend
        self.stopping = stopping or threading.Event()  # shared by the roles of one multi-role process
        self.counts = Counts()
        self.in_flight = InFlight()
        self.guard = RunGuard(self.client, self.keys, role)
        self.metrics = WorkerMetrics(role)
        self.events = EventWriter(self.client, self.keys)
        self.steps = RoleSteps(self.client, self.keys, workflow, self.spec, events=self.events)
        self.handoffs = HandoffBuilder(self.spec, self.keys, self.steps, self.consumer)
        self.committer = Committer(self.client, self.keys, self.streams.group, self.consumer,
                                   ReplicaWait(settings.wait_replicas, settings.wait_timeout_ms))
        self.budgets = BudgetGate(self.client, self.keys, self.spec, settings.max_new_tokens)
        self.breaker = CircuitBreaker(self.model, threshold=settings.breaker_threshold,
                                      base_s=settings.retry_backoff_s, cap_s=settings.breaker_cap_s)
        self.model_calls = ModelCalls(self.breaker, budget_s=settings.outage_budget_s, stopping=self.stopping,
                                      metrics=self.metrics)
        self.limiter = ModelLimiter.for_role(self.client, self.keys, self.spec, settings, stopping=self.stopping,
                                             metrics=self.metrics)

    @property
    def model(self) -> str:
        """The model name the role calls."""
        return self.spec.model or self.settings.model

    @property
    def max_new_tokens(self) -> int:
        """The most tokens one model call of the role may generate."""
        return self.spec.max_new_tokens or self.settings.max_new_tokens

    def share_breaker(self, breaker: CircuitBreaker) -> None:
        """Use ``breaker`` for the model endpoint (roles of one model share their calls and its breaker)."""
        self.breaker = breaker
        self.model_calls.breaker = breaker

    def partition(self, entry: Entry) -> int:
        """The partition of the stream ``entry`` was read from (a tenant's stream found later is parsed once)."""
        part = self.partition_of.get(entry.stream)
        if part is None:
            name = self.keys.parse_stream(entry.stream)
            part = self.partition_of[entry.stream] = name.partition if name is not None else 0
        return part

    def held(self, entries: Sequence[Entry], run_ids: Sequence[str] = ()) -> HeldWait:
        """The hook a model call for ``entries`` (of runs ``run_ids``) marks them with while it waits (``waits``)."""
        return HeldWait(self.client, self.keys, entries, self.ride_out_redis, run_ids)

    def retry_backoff(self, attempts: int) -> float:
        """Seconds to wait before entries delivered ``attempts`` times are read again."""
        return float(self.settings.retry_backoff_s * 2 ** (attempts - 1))

    def ride_out_redis(self, step: Callable[[], T], what: str) -> T:
        """Run ``step``, retrying it while Redis is out (``outages.ride_out_redis``)."""
        return ride_out_redis(step, budget_s=self.settings.outage_budget_s, base_s=self.settings.retry_backoff_s,
                              stopping=self.stopping, metrics=self.metrics, what=what)

    def commit(self, handoffs: Sequence[Handoff]) -> list[Outcome]:
        """Commit ``handoffs`` atomically each, in one round trip (with the replica wait when set).
        The events staged for their runs (``hop_started``, the last tokens) ride in the first
        commit of each run, before its own events."""
        handoffs = [self._with_staged(h) for h in handoffs]
        committed = self.ride_out_redis(lambda: self.committer.commit(handoffs), "a commit")
        outcomes, wait = committed.outcomes, self.committer.wait
        if committed.replicas is not None and wait is not None and committed.replicas < wait.replicas:
            self.metrics.replicas_short()
            log.warning("only %d of %d replicas acknowledged a commit within %d ms", committed.replicas,
                        wait.replicas, wait.timeout_ms)
        self._runs_ended(handoffs, outcomes)
        for h, o in zip(handoffs, outcomes, strict=True):
            if o is Outcome.COMMITTED:
                continue
            with bind(run_id=h.run_id or "", msg_id=h.msg_id):
                if o is Outcome.STALE:
                    log.warning("entry %s was reclaimed by another worker; discarded this result", h.entry.id)
                elif o is Outcome.DUPLICATE:
                    log.info("entry %s had already been handed off; acked the redelivery", h.entry.id)
        return list(outcomes)

    def _runs_ended(self, handoffs: Sequence[Handoff], outcomes: Sequence[Outcome]) -> None:
        """``broker.ends.runs_ended`` for the runs these commits ended (a redelivery's duplicate too: its
        first commit may not have got that far)."""
        ended = [h for h, o in zip(handoffs, outcomes, strict=True) if h.run_id
                 and o in (Outcome.COMMITTED, Outcome.DUPLICATE) and h.record.get("status") in TERMINAL_STATUSES]
        if ended:
            ids = [h.run_id for h in ended if h.run_id]
            tenants = {h.run_id: self.stream_tenant(h.entry.stream) for h in ended if h.run_id}
            self.ride_out_redis(lambda: runs_ended(self.client, self.keys, ids, tenants), "a run's end")

    def stream_tenant(self, stream: str) -> str:
        """The tenant whose task stream ``stream`` is (``""``: runs of no tenant)."""
        name = self.keys.parse_stream(stream)
        return name.tenant if name is not None else ""

    def _with_staged(self, h: Handoff) -> Handoff:
        staged = self.events.take(h.run_id) if h.run_id else []
        return h.after(staged) if staged else h
