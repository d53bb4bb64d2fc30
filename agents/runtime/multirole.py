"""Cross-role batching: one process serves several roles of a workflow (``baton worker A B C``).

``MultiRoleWorker`` holds one :class:`~baton.agents.runtime.worker.Worker` per role, sharing one
Redis client, one stop event and one model backend per model name (one model load), and drives
the same stages (``stages.Pipeline``) as a one-role worker. Each role
stays its own consumer of its own group: a reader thread per role runs the role's usual
``ConsumerLoop`` (reclaim on a timer, own pending entries first, then a blocking read of new
ones, so an idle process polls nothing), and hands each batch it read to the coordinator
instead of processing it. The coordinator takes what every role has ready, runs each role's
``before`` stages (admit, review, guard, gather, prepare, budget), groups the prompts of all
roles by ``(model, max_new_tokens)``, makes the group's ``backend.generate`` calls in place of
each role's ``work`` stage (one call per group for a remote model; for one generated in this
process, ``plan_calls``: shortest prompts first, a call takes other roles' batches while it holds
less than a full batch, so small batches share one call and full ones go alone), and runs each
role's ``after`` stages (settle, hand off to its own next stream, dead letters, retries, commit).
Everything per role stays per role: leases (each role's heartbeat thread renews its entries), reclaim, dead letters,
metrics (one registry per role), rate limits (each role's limiter reserves its prompts of the
shared call), budgets, heartbeats (``baton worker --check ROLE`` sees each role's consumer).

Every hop of a cross-role call records the call in its scratchpad ``meta.batch`` (``roles``,
``size``) and in ``baton_model_batch_roles`` (roles per model call).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import Histogram

from ...broker import Entry, PadBatch, Redis, connect
from ..backends import Generation, ModelBackend, load_backend
from ..settings import Settings
from ..upkeep import worker_upkeep
from ..workflow.spec import Workflow
from .lifecycle import install_signal_handlers
from .modelcall import call_model
from .role import RoleRuntime
from .stages.generate import Generate, sort_outcome
from .tracing import configure
from .work import Batch, Commit
from .worker import Worker

if TYPE_CHECKING:
    from .stages.handle import HandlerRunner

__all__ = ["MultiRoleWorker", "plan_calls"]

log = logging.getLogger("baton.worker")

_ROLES_BUCKETS = (1, 2, 3, 4, 6, 8, 16)
_MAX_GATHER_S = 0.05
"""The longest the coordinator waits for busy roles' next batches to join a model call."""


@dataclass(slots=True)
class _Read:
    """What one role's reader read, and the future its ``ConsumerLoop`` waits on (the backoff
    in seconds when entries were left pending for a retry; None when all were settled)."""

    worker: Worker
    entries: list[Entry]
    done: Future[float | None] = field(default_factory=Future)
    batch: Batch | None = None
    queued: list[Commit] = field(default_factory=list)
    """What the stages before the call queued for the commit (kept when the stages after it run again)."""
    exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)

    @property
    def rt(self) -> RoleRuntime:
        return self.worker.rt


@dataclass(slots=True)
class _Reader:
    """One role's reader thread and whether its last read brought work (it is worth waiting for)."""

    worker: Worker
    flowing: bool = True
    waiting: bool = False
    thread: threading.Thread | None = None


class MultiRoleWorker:
    """One process serving ``roles`` of ``workflow`` with cross-role batched model calls."""

    def __init__(self, settings: Settings, workflow: Workflow, roles: Sequence[str], *,
                 client: Redis | None = None, runner: HandlerRunner | None = None,
                 concurrency: int | None = None) -> None:
        if not roles:
            raise ValueError("a multi-role worker needs at least one role")
        self.settings = settings
        self.workflow = workflow
        self.stopping = threading.Event()
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        specs = [workflow.role(r) for r in dict.fromkeys(roles)]  # WorkflowError for an unknown role
        self.workers = [Worker(settings, workflow, s.role, client=self.client, stopping=self.stopping, runner=runner,
                               concurrency=concurrency) for s in specs]
        self._share_breakers()
        self.readers = [_Reader(w) for w in self.workers]
        self._cond = threading.Condition()
        self._ready: list[_Read] = []
        self.error: BaseException | None = None
        self._batch_roles = {w.spec.role: Histogram("baton_model_batch_roles", "Roles whose prompts shared a call",
                                                    ["role"], buckets=_ROLES_BUCKETS, registry=w.metrics.registry)
                             for w in self.workers}

    @property
    def roles(self) -> list[str]:
        """The roles served, in the order given."""
        return [w.spec.role for w in self.workers]

    def _share_breakers(self) -> None:
        """Roles of one model share its circuit breaker (their prompts share its calls)."""
        first: dict[str, Worker] = {}
        for w in self.workers:
            lead = first.setdefault(w.rt.model, w)
            w.rt.share_breaker(lead.rt.breaker)

    # lifecycle ----------------------------------------------------------------
    def load(self) -> None:
        """Load one backend per model name, shared by the roles that call it."""
        backends: dict[str, ModelBackend] = {}
        for w in self.workers:
            model = w.rt.model
            if model not in backends:
                backends[model] = load_backend(model, threads=self.settings.torch_threads,
                                               flush_tokens=self.settings.token_flush_tokens,
                                               flush_ms=self.settings.token_flush_ms)
            w.backend = backends[model]

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop reading, finish the batches in flight; a second signal exits at once."""
        install_signal_handlers(self.stopping, self.settings.shutdown_grace_s)

    def run(self) -> int:
        """Serve every role until stopped; return the process exit code."""
        self.load()
        configure("baton-worker", span_file=self.settings.otel_file)
        beaters = []
        for w in self.workers:
            if self.settings.metrics_port:
                w.metrics.serve(self.settings.metrics_port)
            beaters.append(w.start())
        lead = self.workers[0]
        worker_upkeep(lead.client, lead.keys, self.settings, self.stopping).start()
        for r in self.readers:
            r.thread = self._thread(functools.partial(self._read_loop, r), f"read-{r.worker.spec.role}")
        log.info("multi-role worker ready: roles %s (%s)", ", ".join(self.roles),
                 ", ".join(w.consumer for w in self.workers))
        self._coordinate()
        for w, beater in zip(self.workers, beaters, strict=True):
            w.shutdown(beater)
        if self.error is not None:
            log.error("a role's reader failed: %s", self.error)
            return 1
        return 0

    @staticmethod
    def _thread(target: Callable[[], None], name: str) -> threading.Thread:
        t = threading.Thread(target=contextvars.copy_context().run, args=(target,), name=name, daemon=True)
        t.start()
        return t

    # reading ------------------------------------------------------------------
    def _read_loop(self, reader: _Reader) -> None:
        """One role's ``ConsumerLoop``; its batches go to the coordinator."""
        w = reader.worker

        def read(pending: bool) -> list[Entry]:
            if not pending and w.rt.streams.idle:  # a blocking read: nothing of this role is arriving
                with self._cond:
                    reader.flowing = False
                    self._cond.notify_all()
            entries = w.read(pending)
            with self._cond:
                reader.flowing = bool(entries)
                self._cond.notify_all()
            return entries

        try:
            w.consumer_loop().run(lambda entries: self._submit(reader, entries), read=read, on_reclaim=w.reclaim_done)
        except BaseException as exc:  # noqa: BLE001 - a dead reader stops the process, which exits non-zero
            self.error = exc
            self.stopping.set()
        finally:
            with self._cond:
                reader.flowing = False
                self._cond.notify_all()

    def _submit(self, reader: _Reader, entries: list[Entry]) -> bool:
        """Hand ``entries`` to the coordinator and wait for them; True when some were left pending."""
        read = _Read(reader.worker, entries)
        with self._cond:
            self._ready.append(read)
            reader.waiting = True
            self._cond.notify_all()
        backoff = read.done.result()  # the coordinator cleared ``reader.waiting`` when it took the batch
        if backoff is None:
            return False
        self.stopping.wait(backoff)
        return True

    def _alive(self) -> bool:
        return any(r.thread is not None and r.thread.is_alive() for r in self.readers)

    def _take(self) -> list[_Read]:
        """The batches ready now; after the first, wait briefly for the roles that are busy."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or not self._alive(), timeout=0.5) or not self._ready:
                return []
            self._cond.wait_for(lambda: all(r.waiting or not r.flowing for r in self.readers),
                                timeout=_MAX_GATHER_S)
            ready, self._ready = self._ready, []
            taken = {b.worker for b in ready}
            for r in self.readers:
                r.waiting = r.waiting and r.worker not in taken
            return ready

    def _coordinate(self) -> None:
        """Serve the readers' batches until every reader has stopped."""
        while self._alive() or self._ready:
            if reads := self._take():
                self._serve(reads)

    # processing ---------------------------------------------------------------
    def _serve(self, reads: list[_Read]) -> None:
        """Every role's stages before the work, the model calls of each model, every role's stages after it."""
        self.workers[0].cpu.serve([e for r in reads for e in r.entries])  # this thread's CPU priority
        staged = [r for r in reads if self._guarded(r, self._before)]
        groups: dict[tuple[str, int], list[_Read]] = {}
        for r in staged:
            assert r.batch is not None
            if not r.batch.work:
                continue
            if isinstance(r.worker.pipeline.work, Generate):
                groups.setdefault((r.rt.model, r.rt.max_new_tokens), []).append(r)
                continue
            try:  # a code role's handlers: its own work stage (their model calls coalesce in its gateway)
                r.worker.pipeline.work(r.batch)
            except BaseException as exc:  # noqa: BLE001 - the reader's loop sorts it out
                self._finish(r, exc)
        for group in groups.values():
            for call in self._calls(group):
                try:
                    self._generate(call)
                except BaseException as exc:  # noqa: BLE001 - the readers' loops sort it out
                    for r in call:
                        self._finish(r, exc)
        for r in staged:
            if not r.done.done():
                self._guarded(r, self._after)

    def _calls(self, group: list[_Read]) -> list[list[_Read]]:
        """The model calls for one model's batches: one for a remote model (its server batches them), as
        ``plan_calls`` says for a backend that pads a batch in this process."""
        if not getattr(group[0].rt.backend, "pads", False):
            return [group]
        prompts = [[item.prompt for item in r.batch.work] if r.batch is not None else [] for r in group]
        return [[group[i] for i in call] for call in plan_calls(prompts, self.settings.batch_size)]

    def _guarded(self, r: _Read, step: Callable[[_Read], None]) -> bool:
        """Run ``step`` riding out Redis outages; on failure its reader gets the error."""
        try:
            r.rt.ride_out_redis(lambda: step(r), "a batch")
            return True
        except BaseException as exc:  # noqa: BLE001 - the reader's ConsumerLoop handles it
            self._finish(r, exc)
            return False

    def _before(self, r: _Read) -> None:
        """The role's stages before its model call (run again from the entries after a Redis outage)."""
        if r.batch is None:  # the first attempt: the entries go in flight (the heartbeat renews them)
            r.rt.in_flight.hold(r.entries)
            r.exits.enter_context(r.rt.metrics.in_flight(len(r.entries)))
        r.batch = Batch(r.entries)
        r.worker.pipeline.run_before(r.batch)
        r.queued = list(r.batch.commits)

    def _generate(self, group: list[_Read]) -> None:
        """One model call (through outages) for the prompts of every role in ``group``."""
        members = [(r.batch, (r.rt, item)) for r in group if r.batch for item in r.batch.work]
        runtimes = [w.rt for w in self.workers if any(r.worker is w for r in group)]
        lead = group[0].rt
        backend = lead.backend
        assert backend is not None

        def call(todo: list[int]) -> list[Generation]:
            called = [members[i][1] for i in todo]
            involved = {rt for rt, _ in called}
            names = [rt.spec.role for rt in runtimes if rt in involved]
            for _, item in called:
                if item.ctx is not None:
                    item.ctx.batch = PadBatch(roles=names, size=len(called))
            gens = call_model(backend, called, lead.max_new_tokens, stream_tokens=self.settings.stream_tokens,
                              roles=runtimes)
            for rt in runtimes:
                if rt in involved:
                    self._batch_roles[rt.spec.role].labels(role=rt.spec.role).observe(len(names))
            log.info("model call: %d prompts of roles %s", len(called), ",".join(names))
            return gens

        out = lead.model_calls.run(call, [item.task.deadline for _, (_, item) in members],
                                   lead.held([item.entry for _, (_, item) in members],
                                             [item.task.run_id for _, (_, item) in members]))
        sort_outcome(out, members)

    def _after(self, r: _Read) -> None:
        """The role's own ends of the call: budgets, handoffs, dead letters, retries, the commit (the
        commits queued before the call are kept when a Redis outage makes this run again)."""
        assert r.batch is not None
        r.batch.commits = list(r.queued)
        r.worker.pipeline.run_after(r.batch)
        self._finish(r, None, r.batch.backoff)

    def _finish(self, r: _Read, exc: BaseException | None, backoff: float | None = None) -> None:
        """Release ``r``'s in-flight state and wake its reader."""
        r.rt.in_flight.release()
        r.exits.close()
        if r.done.done():
            return
        if exc is not None:
            r.done.set_exception(exc)
        else:
            r.done.set_result(backoff)


def plan_calls(batches: Sequence[Sequence[str]], size: int) -> list[list[int]]:
    """The model calls for the prompt batches of one model (each a role's batch), as lists of
    indices into ``batches``: shortest prompts first, a call takes the next batch whole while it
    holds fewer than ``size`` prompts (the batch size), so a call is topped up to a full batch and
    no further. Small batches of several roles share a call (the point of cross-role batching);
    full ones go alone, neither padded to another role's longer prompts nor made into one call of
    three batches (``python -m bench.crosscalls``: three full seed-chain batches of 32 in one call cost
    the twin 1.1-2x the model CPU of three calls; three batches of 12 cost 0.6x in one call)."""
    calls: list[list[int]] = []
    held = 0
    for i in sorted(range(len(batches)), key=lambda i: max(map(len, batches[i]), default=0)):
        if not calls or held >= size:
            calls.append([])
            held = 0
        calls[-1].append(i)
        held += len(batches[i])
    return calls
