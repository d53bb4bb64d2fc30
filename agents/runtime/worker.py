"""The worker of one role: read, run the role's stages, commit the handoff, ack.

One process is one consumer in its role's group. It reads its own pending entries first, then
new ones in batches, and runs each batch through the role's pipeline (``stages``: admit, review,
guard, gather, prepare, budget, one batched model call, hand off, commit: each result in one
atomic step of next task + scratchpad entry + run record + XACK). Bad entries go to the
dead-letter stream with their reason; transient failures are retried until Redis' delivery
count passes ``max_deliveries``. SIGTERM stops reading, finishes the batch in flight and exits
0; a second signal exits at once and leaves the batch pending for another worker.

The role's shared services (Redis face, guard, budgets, limiter, breaker, counters, the entries
in flight) are its :class:`~baton.agents.runtime.role.RoleRuntime`; ``MultiRoleWorker`` drives
the same stages of several roles with the lifecycle methods here (``read``, ``beat``, ...).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
import time
from typing import TYPE_CHECKING

from ...broker import BrokerError, ConsumerLoop, Entry, Redis
from ...broker.janitor import Janitor
from ...broker.timers import Timers
from ..backends import ModelBackend, load_backend
from ..settings import Settings
from ..upkeep import worker_upkeep
from ..workflow.spec import Workflow
from .cpu import BacklogNice
from .lifecycle import heartbeat, heartbeat_loop, install_signal_handlers, torch_threads
from .logs import context
from .role import RoleRuntime
from .stages import Pipeline, pipeline_for
from .tracing import configure
from .work import Batch

if TYPE_CHECKING:
    from .stages.handle import HandlerRunner

__all__ = ["Worker"]

log = logging.getLogger("baton.worker")


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
        pipeline: Pipeline | None = None,
        runner: HandlerRunner | None = None,
        concurrency: int | None = None,
    ) -> None:
        self.rt = rt = RoleRuntime(settings, workflow, role, backend=backend, client=client, stopping=stopping)
        self.settings, self.workflow, self.spec, self.keys = settings, workflow, rt.spec, rt.keys
        self.client, self.consumer, self.streams, self.stopping = rt.client, rt.consumer, rt.streams, rt.stopping
        self.metrics, self.steps = rt.metrics, rt.steps
        self.pipeline = pipeline or pipeline_for(rt, runner)
        self.read_count = (concurrency if rt.spec.handler else None) or settings.batch_size
        """Entries one read takes: ``batch_size``; for a code role its ``--concurrency`` (handlers at once)."""
        self.janitor = Janitor(self.client, self.keys, self.streams.streams, interval_s=settings.janitor_interval_s,
                               reviews=bool(rt.spec.review))
        """Sweeps the role's streams; only a role with review fails reviews past their deadline (its ACL
        user alone may touch the review keys)."""
        self.timers = (Timers(self.client, self.keys, [self.keys.timers(workflow.name, role, p)
                                                       for p in range(self.keys.partitions)])
                       if rt.spec.handler else None)
        """A code role's ticker of its durable timers (``ctx.sleep``, ``ctx.wait_for`` timeouts)."""
        self.last_read = 0
        """Entries the previous read returned (lingering for more is for busy workers)."""
        self.cpu = BacklogNice(self.keys, settings.worker_nice)
        """The batch thread's CPU priority, lower while it serves a backlog (``BATON_WORKER_NICE``)."""

    @property
    def backend(self) -> ModelBackend | None:
        """The role's model backend (None until loaded)."""
        return self.rt.backend

    @backend.setter
    def backend(self, backend: ModelBackend | None) -> None:
        self.rt.backend = backend

    @property
    def processed(self) -> int:
        return self.rt.counts.processed

    @property
    def failed(self) -> int:
        return self.rt.counts.failed

    @property
    def dead_lettered(self) -> int:
        return self.rt.counts.dead_lettered

    @property
    def reclaimed(self) -> int:
        return self.rt.counts.reclaimed

    # lifecycle ----------------------------------------------------------------
    def load(self) -> None:
        """Load the model backend (the slow part of start-up)."""
        if self.rt.backend is None:
            self.rt.backend = load_backend(self.rt.model, threads=self.settings.torch_threads,
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
        beater = self.start()
        worker_upkeep(self.client, self.keys, self.settings, self.stopping).start()
        log.info("worker %s ready (role %s, agent %s)", self.consumer, self.spec.role, self.spec.agent)
        self.consumer_loop().run(self.process, read=self.read, on_reclaim=self.reclaim_done)
        self.shutdown(beater)
        return 0

    def start(self) -> threading.Thread:
        """Create the groups, write the first heartbeat and start the heartbeat thread (returned)."""
        self.rt.ride_out_redis(self.streams.ensure_groups, "start-up")
        self.rt.ride_out_redis(self.beat, "start-up")
        beater = threading.Thread(target=contextvars.copy_context().run, args=(self.heartbeat_loop,),
                                  name=f"heartbeat-{self.spec.role}", daemon=True)
        beater.start()
        return beater

    def consumer_loop(self) -> ConsumerLoop:
        """The role's read loop (reclaim on a timer, own pending entries first, then new ones)."""
        s = self.settings
        return ConsumerLoop(self.streams, self.stopping, count=self.read_count, block_ms=s.block_ms,
                            lease_ms=s.lease_ms, reclaim_interval_s=s.reclaim_interval_s,
                            retry_backoff_s=s.retry_backoff_s)

    def reclaim_done(self, claimed: int) -> None:
        """After each reclaim pass: count what was claimed, let the janitor sweep when due and wake a
        code role's due timers."""
        self.rt.counts.reclaimed += claimed
        self.metrics.reclaimed(claimed)
        self.janitor.maybe_sweep()
        if self.timers is not None:
            self.timers.tick()

    def shutdown(self, beater: threading.Thread) -> None:
        """Stop the heartbeat, close the readers, leave the group, log the summary line."""
        self.stopping.set()
        beater.join(timeout=2)
        self.streams.close()
        with contextlib.suppress(BrokerError):
            self.streams.forget()
        log.info(
            "worker %s stopped: %d processed, %d dead-lettered, %d reclaimed",
            self.consumer, self.processed, self.dead_lettered, self.reclaimed,
        )

    def read(self, pending: bool) -> list[Entry]:
        """Up to ``batch_size`` entries. A short read lingers for more only while work is flowing
        (the previous read brought more than one entry): a lone task on an idle worker is not held."""
        rt = self.rt
        if not pending and rt.breaker.is_open and not rt.model_calls.probe(rt.backend):
            return []
        size = self.read_count
        entries = self.streams.read(pending=pending, count=size, block_ms=self.settings.block_ms)
        flowing, self.last_read = self.last_read > 1, len(entries)
        if not pending and flowing and 0 < len(entries) < size and self.settings.linger_ms > 0:
            time.sleep(self.settings.linger_ms / 1000)
            entries += self.streams.read_more(entries, count=size - len(entries))
        return entries

    # heartbeat and lease -----------------------------------------------------------
    def beat(self) -> None:
        """Write the role's heartbeat (who, where, what it did, the model endpoint's breaker)."""
        breaker = self.rt.breaker
        beat = heartbeat(self.consumer, self.spec.role, self.processed, metrics_port=self.metrics.port,
                         torch_threads=torch_threads(), breaker=breaker.state.value,
                         model_down_since=breaker.opened_at, outage_s=round(breaker.open_seconds, 1))
        self.streams.beat(beat, self.settings.heartbeat_ttl_s)

    def heartbeat_loop(self) -> None:
        """Until stopped: the heartbeat, and the leases of the entries in flight renewed."""
        heartbeat_loop(self.stopping, self.settings.heartbeat_interval_s, self.beat, self.streams,
                       self.rt.in_flight.entries)

    # processing ---------------------------------------------------------------
    def process(self, entries: list[Entry]) -> bool:
        """Run one batch through the role's stages; True when entries were left pending for a retry.

        A Redis outage in any stage (out of memory, a failover, a lost connection) is ridden out
        here: the same entries run the stages again once Redis answers, without a new delivery.
        """
        self.cpu.serve(entries)
        with self.rt.in_flight.holding(entries), self.metrics.in_flight(len(entries)):
            batch = self.rt.ride_out_redis(lambda: self.pipeline.run(Batch(entries)), "a batch")
            if batch.backoff is None:
                return False
            self.stopping.wait(batch.backoff)
            return True
