"""The worker loop of one role: read, decode, run the agent, commit the handoff, ack.

One process is one consumer in its role's group. It reads its own pending entries first, then
new ones in batches; runs the batch through one model call; and commits each result in one
atomic step (next task + scratchpad entry + run record + XACK). Bad entries go to the
dead-letter stream with their reason; transient failures are retried until Redis' delivery
count passes ``max_deliveries``. SIGTERM stops reading, finishes the batch in flight and exits
0; a second signal exits at once and leaves the batch pending for another worker.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from baton.agents.backends import Generation, ModelBackend, load_backend
from baton.agents.runtime.admission import admit, dead_letter
from baton.agents.runtime.breaker import CircuitBreaker
from baton.agents.runtime.budgets import BudgetGate
from baton.agents.runtime.events import EventWriter
from baton.agents.runtime.guards import RunGuard
from baton.agents.runtime.handoff import build_handoff, hop_meta, pad_entry
from baton.agents.runtime.lifecycle import heartbeat_loop, install_signal_handlers, torch_threads
from baton.agents.runtime.logs import bind, context
from baton.agents.runtime.metrics import WorkerMetrics
from baton.agents.runtime.outages import ModelCalls, ride_out_redis
from baton.agents.runtime.ratelimits import ModelLimiter
from baton.agents.runtime.review import ReviewStage
from baton.agents.runtime.routing import gather
from baton.agents.runtime.steps import RoleSteps, StepContext
from baton.agents.runtime.tokens import TokenStream
from baton.agents.runtime.tracing import configure, end_hop, start_hop, traced_model_call, use_hop
from baton.agents.settings import Settings
from baton.agents.workflow.spec import RoleSpec, Workflow
from baton.broker import (
    BrokerError,
    ConsumerLoop,
    Entry,
    Handoff,
    Keys,
    Outcome,
    Redis,
    RoleStreams,
    cancelled_and_scratchpads,
    connect,
    consumer_name,
    scratchpads,
)
from baton.broker.commit import commit_batch
from baton.broker.janitor import Janitor
from baton.broker.keys import marker_ttl
from baton.broker.replication import ReplicaWait
from baton.protocol import HopStarted, Task

T = TypeVar("T")

__all__ = ["Worker"]

log = logging.getLogger("baton.worker")


@dataclass(slots=True)
class _Work:
    entry: Entry
    task: Task
    prompt: str = ""
    started: float = 0.0
    ctx: StepContext | None = None
    memory: list[dict[str, Any]] | None = None
    span: Any = None  # the hop's OpenTelemetry span (None when tracing is off)


class Worker:
    """A worker process for one role of a workflow."""

    def __init__(
        self,
        settings: Settings,
        workflow: Workflow,
        role: str,
        *,
        backend: ModelBackend | None = None,
        client: Redis | None = None,
        stopping: threading.Event | None = None,
    ) -> None:
        self.settings = settings
        self.workflow = workflow
        self.spec: RoleSpec = workflow.role(role)
        self.keys = Keys(settings.prefix, settings.partitions)
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        self.consumer = consumer_name(role)
        self.streams = RoleStreams(self.client, self.keys, workflow.name, role, self.consumer,
                                   settings.worker_partition_list(), batch_share=settings.batch_share,
                                   batch_count=settings.batch_lane_size)
        self.partition_of = {s: n.partition for s in self.streams.streams if (n := self.keys.parse_stream(s))}
        self.backend = backend
        self.stopping = stopping or threading.Event()  # shared by the roles of one multi-role process
        self.processed = 0
        self.failed = 0
        self.dead_lettered = 0
        self.reclaimed = 0
        self.guard = RunGuard(self.client, self.keys, role)
        self.janitor = Janitor(self.client, self.keys, self.streams.streams, interval_s=settings.janitor_interval_s,
                               results_retention_s=settings.results_retention_s, record_ttl_s=settings.record_ttl_s)
        self.metrics = WorkerMetrics(role)
        self.events = EventWriter(self.client, self.keys, maxlen=settings.events_maxlen, ttl_s=settings.events_ttl_s)
        self.steps = RoleSteps(self.client, self.keys, workflow, self.spec, record_ttl_s=settings.record_ttl_s,
                               events=self.events)
        self.review = ReviewStage(self)
        self.budgets = BudgetGate(self.client, self.keys, self.spec, settings.max_new_tokens)
        self._in_flight: list[Entry] = []
        self._lock = threading.Lock()
        self._last_read = 0  # entries the previous read returned (lingering is for busy workers)
        self.breaker = CircuitBreaker(self.spec.model or settings.model, threshold=settings.breaker_threshold,
                                      base_s=settings.retry_backoff_s, cap_s=settings.breaker_cap_s)
        self.model_calls = ModelCalls(self.breaker, budget_s=settings.outage_budget_s, stopping=self.stopping,
                                      metrics=self.metrics)
        self.limiter = ModelLimiter.for_role(self.client, self.keys, self.spec, settings, stopping=self.stopping,
                                             metrics=self.metrics)

    # lifecycle ----------------------------------------------------------------
    def load(self) -> None:
        """Load the model backend (the slow part of start-up)."""
        if self.backend is None:
            self.backend = load_backend(self.spec.model or self.settings.model, threads=self.settings.torch_threads,
                                        flush_tokens=self.settings.token_flush_tokens,
                                        flush_ms=self.settings.token_flush_ms)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop after the batch in flight; a second signal exits at once."""
        install_signal_handlers(self.stopping, self.settings.shutdown_grace_s)

    def run(self) -> int:
        """Serve until stopped; return the process exit code."""
        context(role=self.spec.role, consumer=self.consumer)
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port)
        self.load()
        configure("baton-worker", span_file=self.settings.otel_file)
        self._ride_out_redis(self.streams.ensure_groups, "start-up")
        self._ride_out_redis(self._beat, "start-up")
        beater = threading.Thread(target=contextvars.copy_context().run, args=(self._heartbeat_loop,),
                                  name="heartbeat", daemon=True)
        beater.start()
        log.info("worker %s ready (role %s, agent %s)", self.consumer, self.spec.role, self.spec.agent)
        loop = ConsumerLoop(self.streams, self.stopping, count=self.settings.batch_size,
                            block_ms=self.settings.block_ms, lease_ms=self.settings.lease_ms,
                            reclaim_interval_s=self.settings.reclaim_interval_s,
                            retry_backoff_s=self.settings.retry_backoff_s)
        loop.run(self.process, read=self._read, on_reclaim=self._reclaimed)
        self._shutdown(beater)
        return 0

    def _reclaimed(self, claimed: int) -> None:
        """After each reclaim pass: count what was claimed, and let the janitor sweep when due."""
        self.reclaimed += claimed
        self.metrics.reclaimed(claimed)
        self.janitor.maybe_sweep()

    def _shutdown(self, beater: threading.Thread) -> None:
        self.stopping.set()
        beater.join(timeout=2)
        self.streams.close()
        with contextlib.suppress(BrokerError):
            self.streams.forget()
        log.info(
            "worker %s stopped: %d processed, %d dead-lettered, %d reclaimed",
            self.consumer, self.processed, self.dead_lettered, self.reclaimed,
        )

    def _read(self, pending: bool) -> list[Entry]:
        """Up to ``batch_size`` entries. A short read lingers for more only while work is flowing
        (the previous read brought more than one entry): a lone task on an idle worker is not held."""
        if not pending and self.breaker.is_open and not self.model_calls.probe(self.backend):
            return []
        size = self.settings.batch_size
        entries = self.streams.read(pending=pending, count=size, block_ms=self.settings.block_ms)
        flowing, self._last_read = self._last_read > 1, len(entries)
        if not pending and flowing and 0 < len(entries) < size and self.settings.linger_ms > 0:
            time.sleep(self.settings.linger_ms / 1000)
            entries += self.streams.read_more(entries, count=size - len(entries))
        return entries

    # heartbeat and lease -----------------------------------------------------------
    def _beat(self) -> None:
        info = {
            "consumer": self.consumer, "role": self.spec.role, "host": socket.gethostname(),
            "pid": os.getpid(), "processed": self.processed, "at": time.time(),
            "metrics_port": self.metrics.port, "torch_threads": torch_threads(),
            "breaker": self.breaker.state.value, "model_down_since": self.breaker.opened_at,
            "outage_s": round(self.breaker.open_seconds, 1),
        }
        self.streams.beat(json.dumps(info).encode(), self.settings.heartbeat_ttl_s)

    def _heartbeat_loop(self) -> None:
        heartbeat_loop(self.stopping, self.settings.heartbeat_interval_s, self._beat, self.streams, self._entries)

    def _entries(self) -> list[Entry]:
        with self._lock:
            return list(self._in_flight)

    # processing ---------------------------------------------------------------
    def process(self, entries: list[Entry]) -> bool:
        """Handle one batch; return True when entries were left pending for a retry.

        A Redis outage in any stage (out of memory, a failover, a lost connection) is ridden out
        here: the same entries are processed again once Redis answers, without a new delivery.
        """
        with self._lock:
            self._in_flight = list(entries)
        try:
            with self.metrics.in_flight(len(entries)):
                return self._ride_out_redis(lambda: self._process(entries), "a batch")
        finally:
            with self._lock:
                self._in_flight = []

    def _process(self, entries: list[Entry]) -> bool:
        """The stages of one batch, in order; True when entries were left pending for a retry."""
        work = self.review.resume(self._admit_all(entries))  # decided reviews hand off here
        work = self._guard(work)
        work = self._gather(work)
        if not work:
            return False
        self._prepare(work)
        done, rejected, failed = self._generate(work)
        if done:
            self._hand_off(done)
        if rejected:
            self._reject(rejected)
        if failed:
            self._retry_later(failed)
        return bool(failed)

    # stages ---------------------------------------------------------------------
    def _admit_all(self, entries: list[Entry]) -> list[_Work]:
        """Admit: decode and check each entry; dead-letter the ones that cannot run."""
        self.metrics.retried(sum(e.deliveries > 1 for e in entries))
        dead: list[Handoff] = []
        work: list[_Work] = []
        for entry in entries:
            reason, task = admit(entry, self.workflow.name, self.spec, self.settings)
            if reason:
                p = self.partition_of.get(entry.stream, 0)
                dead.append(dead_letter(self.keys, self.spec.role, entry, reason, task, p))
            elif task is not None:
                work.append(_Work(entry, task))
        if dead:
            self._commit(dead)
            self.dead_lettered += len(dead)
            self.metrics.dead_lettered(len(dead))
        return work

    def _guard(self, work: list[_Work]) -> list[_Work]:
        """Guard: end cancelled and late runs instead of running them. One round trip reads the
        cancelled flags (and, for run-scoped memory, the scratchpads: kept for ``_prepare``)."""
        cancelled = self._before_run(work)
        halts = self.guard.halts([(w.entry, w.task) for w in work], cancelled=cancelled)
        if halts:
            self._commit(list(halts.values()))
        return [w for w in work if w.entry.id not in halts]

    def _gather(self, work: list[_Work]) -> list[_Work]:
        """Gather: for a fan-in role, parts wait (acked) until their group is complete."""
        if not self.spec.join or not work:
            return work
        return gather(self.client, self.keys, self.streams.group, self.consumer, work,
                      ttl_s=marker_ttl(self.settings.record_ttl_s, self.settings.marker_ttl_s))

    def _prepare(self, work: list[_Work]) -> None:
        """Prompt: memories, declared tool steps and shared memory, the rendered prompt. Runs once
        per task and batch, whatever happens to the model call after it."""
        if any(w.memory is None for w in work):
            for w, memory in zip(work, self._memories([w.task for w in work]), strict=True):
                w.memory = memory
        self.events.emit([HopStarted(run_id=w.task.run_id, role=self.spec.role, agent=self.spec.agent, hop=w.task.hop,
                                     msg_id=w.task.id, consumer=self.consumer) for w in work])
        for w in work:
            w.span = start_hop(w.task, self.spec.role, self.spec.agent, self.consumer)
            with use_hop(w.span):
                w.ctx = self.steps.before(w.task)
            w.prompt = self.steps.render(w.task, w.memory or [], w.ctx)
            w.started = time.time()

    def _generate(self, work: list[_Work]) -> tuple[list[tuple[_Work, Generation]], list[tuple[_Work, str]],
                                                   list[_Work]]:
        """Generate: one batched model call, through model outages (``ModelCalls``). Returns the
        generated tasks, the tasks to dead-letter now (with the reason) and those to retry later.
        Over-budget tasks are dead-lettered before the call (``BudgetGate``)."""
        work, over = self.budgets.reserve(work)
        out = self.model_calls.run(lambda todo: self._model_call([work[i] for i in todo]),
                                   [w.task.deadline for w in work])
        done = [(work[i], g) for i, g in sorted(out.generated.items())]
        self.budgets.settle(work, done, self.backend.name if self.backend else "")
        rejected = over + [(work[i], reason) for i, reason in sorted(out.rejected.items())]
        return done, rejected, [work[i] for i in sorted(out.poisoned + out.held)]

    def _hand_off(self, done: list[tuple[_Work, Generation]]) -> None:
        """Hand off and commit: each task's next message, scratchpad entry and run record, in one
        atomic step per task (one round trip for the batch)."""
        finished = time.time()
        if self.spec.review:
            self.review.park(done, finished)
            return
        handoffs = [self._handoff(w, g.text, g.new_tokens, g.truncated, finished) for w, g in done]
        outcomes = self._commit(handoffs)
        self.processed += sum(o is Outcome.COMMITTED for o in outcomes)
        for (w, g), o in zip(done, outcomes, strict=True):
            end_hop(w.span, tokens=g.new_tokens, outcome=o.name.lower())
            if o is Outcome.COMMITTED:
                self.metrics.processed()
                self.metrics.step(finished - w.started, g.new_tokens)
                with bind(run_id=w.task.run_id, msg_id=w.task.id):
                    log.info("hop %d handed to %s: %d tokens in %.3fs", w.task.hop, self.spec.next or "results",
                             g.new_tokens, finished - w.started)

    def _reject(self, rejected: list[tuple[_Work, str]]) -> None:
        """Dead-letter tasks the model refused or an outage outlasted, failing their runs with the reason."""
        dead = [dead_letter(self.keys, self.spec.role, w.entry, reason, w.task,
                            self.partition_of.get(w.entry.stream, 0)) for w, reason in rejected]
        for w, reason in rejected:
            end_hop(w.span, outcome="dead_lettered", error=reason)
        self._commit(dead)
        self.dead_lettered += len(dead)
        self.metrics.dead_lettered(len(dead))

    def _retry_later(self, failed: list[_Work]) -> None:
        """Leave failed tasks pending (uncommitted) and back off; their redelivery counts one attempt."""
        self.failed += len(failed)
        for w in failed:
            end_hop(w.span, outcome="retry", error="left pending for a retry")
        self.metrics.failed(len(failed))
        attempts = max(w.entry.deliveries for w in failed)
        self.stopping.wait(self.settings.retry_backoff_s * 2 ** (attempts - 1))

    def _model_call(self, work: list[_Work]) -> list[Generation]:
        backend = self.backend
        assert backend is not None
        max_new = self.spec.max_new_tokens or self.settings.max_new_tokens
        prompts = [w.prompt for w in work]

        def call() -> list[Generation]:
            if not self.settings.stream_tokens:
                return list(backend.generate(prompts, max_new_tokens=max_new))
            stream = TokenStream(self.events, [w.task for w in work], self.spec.role, self.spec.agent)
            try:
                return list(backend.generate(prompts, max_new_tokens=max_new, on_tokens=stream))
            finally:
                stream.close()

        return self.limiter.call(len(prompts), max_new, lambda: traced_model_call(
            [w.span for w in work], call, model=backend.name, role=self.spec.role))

    def _before_run(self, work: list[_Work]) -> list[bool]:
        """Cancelled flags of ``work``; for run-scoped memory without fan-in its scratchpads too
        (kept on each item), read in the same round trip."""
        if not work:
            return []
        early = self.spec.memory == "run" and not self.spec.join
        pads = [(w.task.run_id, self.spec.agent) for w in work] if early else []
        flags, pads_read = cancelled_and_scratchpads(self.client, self.keys, [w.task.run_id for w in work], pads)
        for w, memory in zip(work if early else [], pads_read, strict=True):
            w.memory = memory
        return flags

    def _memories(self, tasks: list[Task]) -> list[list[dict[str, Any]]]:
        if (long_term := self.steps.memories(tasks)) is not None:
            return long_term
        if self.spec.memory != "run":
            return [[] for _ in tasks]
        return scratchpads(self.client, self.keys, [(t.run_id, self.spec.agent) for t in tasks])

    def _handoff(self, w: _Work, output: str, tokens: int, truncated: bool, finished: float) -> Handoff:
        return build_handoff(self.spec, self.keys, self.steps, self.consumer, entry=w.entry, task=w.task,
                             prompt=w.prompt, ctx=w.ctx, started=w.started, output=output, tokens=tokens,
                             truncated=truncated, finished=finished, span=w.span)

    def meta(self, w: _Work, tokens: int, truncated: bool, finished: float) -> dict[str, Any]:
        """A hop's scratchpad ``meta`` (see ``handoff.hop_meta``)."""
        return hop_meta(self.spec, self.steps, self.consumer, w.task, w.ctx, started=w.started, finished=finished,
                        tokens=tokens, truncated=truncated)

    def pad_value(self, w: _Work, output: str, meta: dict[str, Any]) -> bytes:
        """The scratchpad entry of a hop: its input task, the response and ``meta``."""
        return pad_entry(w.task, output, meta)

    def _ride_out_redis(self, step: Callable[[], T], what: str) -> T:
        return ride_out_redis(step, budget_s=self.settings.outage_budget_s, base_s=self.settings.retry_backoff_s,
                              stopping=self.stopping, metrics=self.metrics, what=what)

    def _commit(self, handoffs: list[Handoff]) -> list[Outcome]:
        wait = ReplicaWait(self.settings.wait_replicas, self.settings.wait_timeout_ms)
        committed = self._ride_out_redis(
            lambda: commit_batch(self.client, self.keys, self.streams.group, self.consumer, handoffs,
                                 record_ttl_s=self.settings.record_ttl_s, events_maxlen=self.settings.events_maxlen,
                                 events_ttl_s=self.settings.events_ttl_s, wait=wait,
                                 marker_ttl_s=self.settings.marker_ttl_s),
            "a commit",
        )
        outcomes = committed.outcomes
        if committed.replicas is not None and committed.replicas < wait.replicas:
            self.metrics.replicas_short()
            log.warning("only %d of %d replicas acknowledged a commit within %d ms", committed.replicas,
                        wait.replicas, wait.timeout_ms)
        for h, o in zip(handoffs, outcomes, strict=True):
            with bind(run_id=h.run_id or "", msg_id=h.msg_id):
                if o is Outcome.STALE:
                    log.warning("entry %s was reclaimed by another worker; discarded this result", h.entry.id)
                elif o is Outcome.DUPLICATE:
                    log.info("entry %s had already been handed off; acked the redelivery", h.entry.id)
        return outcomes
