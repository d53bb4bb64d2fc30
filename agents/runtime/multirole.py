"""Cross-role batching: one process serves several roles of a workflow (``baton worker A B C``).

``MultiRoleWorker`` holds one :class:`~baton.agents.runtime.worker.Worker` per role, sharing one
Redis client, one stop event and one model backend per model name (one model load). Each role
stays its own consumer of its own group: a reader thread per role runs the role's usual
``ConsumerLoop`` (reclaim on a timer, own pending entries first, then a blocking read of new
ones, so an idle process polls nothing), and hands each batch it read to the coordinator
instead of processing it. The coordinator takes what every role has ready, runs each role's
stages up to the prompt (admit, review, guard, gather, prepare, budgets), groups the prompts
of all roles by ``(model, max_new_tokens)``, makes ONE ``backend.generate`` call per group, and
lets each role hand off its own results to its own next stream. Everything per role stays per
role: leases (each role's heartbeat thread renews its entries), reclaim, dead letters,
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

from prometheus_client import Histogram

from baton.agents.backends import Generation, ModelBackend, load_backend
from baton.agents.runtime.lifecycle import install_signal_handlers
from baton.agents.runtime.ratelimits import Reservation
from baton.agents.runtime.tokens import TokenStream
from baton.agents.runtime.tracing import configure, end_hop, traced_model_call
from baton.agents.runtime.worker import Worker, _Work
from baton.agents.settings import Settings
from baton.agents.workflow.spec import Workflow
from baton.broker import ConsumerLoop, Entry, Redis, connect

__all__ = ["MultiRoleWorker"]

log = logging.getLogger("baton.worker")

_ROLES_BUCKETS = (1, 2, 3, 4, 6, 8, 16)
_MAX_GATHER_S = 0.05
"""The longest the coordinator waits for busy roles' next batches to join a model call."""


@dataclass(slots=True)
class _Batch:
    """What one role's reader read, and the future its ``ConsumerLoop`` waits on (the backoff
    in seconds when entries were left pending for a retry; None when all were settled)."""

    worker: Worker
    entries: list[Entry]
    done: Future[float | None] = field(default_factory=Future)
    work: list[_Work] = field(default_factory=list)
    over: list[tuple[_Work, str]] = field(default_factory=list)
    generated: list[tuple[_Work, Generation]] = field(default_factory=list)
    rejected: list[tuple[_Work, str]] = field(default_factory=list)
    failed: list[_Work] = field(default_factory=list)
    exits: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    counted: bool = False


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
                 client: Redis | None = None) -> None:
        if not roles:
            raise ValueError("a multi-role worker needs at least one role")
        self.settings = settings
        self.workflow = workflow
        self.stopping = threading.Event()
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        specs = [workflow.role(r) for r in dict.fromkeys(roles)]  # WorkflowError for an unknown role
        self.workers = [Worker(settings, workflow, s.role, client=self.client, stopping=self.stopping)
                        for s in specs]
        self._share_breakers()
        self.readers = [_Reader(w) for w in self.workers]
        self._cond = threading.Condition()
        self._ready: list[_Batch] = []
        self.error: BaseException | None = None
        self._batch_roles = {w.spec.role: Histogram("baton_model_batch_roles", "Roles whose prompts shared a call",
                                                    ["role"], buckets=_ROLES_BUCKETS, registry=w.metrics.registry)
                             for w in self.workers}

    @property
    def roles(self) -> list[str]:
        """The roles served, in the order given."""
        return [w.spec.role for w in self.workers]

    def model_of(self, w: Worker) -> str:
        """The model name ``w``'s role calls."""
        return w.spec.model or self.settings.model

    def _share_breakers(self) -> None:
        """Roles of one model share its circuit breaker (their prompts share its calls)."""
        first: dict[str, Worker] = {}
        for w in self.workers:
            lead = first.setdefault(self.model_of(w), w)
            w.breaker = lead.breaker
            w.model_calls.breaker = lead.breaker

    # lifecycle ----------------------------------------------------------------
    def load(self) -> None:
        """Load one backend per model name, shared by the roles that call it."""
        backends: dict[str, ModelBackend] = {}
        for w in self.workers:
            model = self.model_of(w)
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
            w._ride_out_redis(w.streams.ensure_groups, "start-up")
            w._ride_out_redis(w._beat, "start-up")
            beaters.append(self._thread(w._heartbeat_loop, f"heartbeat-{w.spec.role}"))
        for r in self.readers:
            r.thread = self._thread(functools.partial(self._read_loop, r), f"read-{r.worker.spec.role}")
        log.info("multi-role worker ready: roles %s (%s)", ", ".join(self.roles),
                 ", ".join(w.consumer for w in self.workers))
        self._coordinate()
        for w, beater in zip(self.workers, beaters, strict=True):
            w._shutdown(beater)
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
        s = self.settings
        loop = ConsumerLoop(w.streams, self.stopping, count=s.batch_size, block_ms=s.block_ms, lease_ms=s.lease_ms,
                            reclaim_interval_s=s.reclaim_interval_s, retry_backoff_s=s.retry_backoff_s)

        def read(pending: bool) -> list[Entry]:
            entries = w._read(pending)
            with self._cond:
                reader.flowing = bool(entries)
                self._cond.notify_all()
            return entries

        try:
            loop.run(lambda entries: self._submit(reader, entries), read=read, on_reclaim=w._reclaimed)
        except BaseException as exc:  # noqa: BLE001 - a dead reader stops the process, which exits non-zero
            self.error = exc
            self.stopping.set()
        finally:
            with self._cond:
                reader.flowing = False
                self._cond.notify_all()

    def _submit(self, reader: _Reader, entries: list[Entry]) -> bool:
        """Hand ``entries`` to the coordinator and wait for them; True when some were left pending."""
        batch = _Batch(reader.worker, entries)
        with self._cond:
            self._ready.append(batch)
            reader.waiting = True
            self._cond.notify_all()
        backoff = batch.done.result()  # the coordinator cleared ``reader.waiting`` when it took the batch
        if backoff is None:
            return False
        self.stopping.wait(backoff)
        return True

    def _alive(self) -> bool:
        return any(r.thread is not None and r.thread.is_alive() for r in self.readers)

    def _take(self) -> list[_Batch]:
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
            if batches := self._take():
                self._serve(batches)

    # processing ---------------------------------------------------------------
    def _serve(self, batches: list[_Batch]) -> None:
        """Every role's stages up to the prompt, one model call per model, each role's handoffs."""
        staged = [b for b in batches if self._guarded(b, self._stage)]
        groups: dict[tuple[str, int], list[_Batch]] = {}
        for b in staged:
            if b.work:
                groups.setdefault((self.model_of(b.worker), self._max_new(b.worker)), []).append(b)
        for group in groups.values():
            try:
                self._generate(group)
            except BaseException as exc:  # noqa: BLE001 - the readers' loops sort it out
                for b in group:
                    self._finish(b, exc)
        for b in staged:
            if not b.done.done():
                self._guarded(b, self._settle)

    def _guarded(self, b: _Batch, step: Callable[[_Batch], None]) -> bool:
        """Run ``step`` riding out Redis outages; on failure its reader gets the error."""
        try:
            b.worker._ride_out_redis(lambda: step(b), "a batch")
            return True
        except BaseException as exc:  # noqa: BLE001 - the reader's ConsumerLoop handles it
            self._finish(b, exc)
            return False

    def _stage(self, b: _Batch) -> None:
        """The role's stages before its model call: admit, review, guard, gather, prepare, budgets."""
        w = b.worker
        with w._lock:
            w._in_flight = list(b.entries)
        if not b.counted:  # a stage ridden out after a Redis outage runs again: count once
            b.exits.enter_context(w.metrics.in_flight(len(b.entries)))
            b.counted = True
        work = w._gather(w._guard(w.review.resume(w._admit_all(b.entries))))
        if work:
            w._prepare(work)
            work, b.over = w.budgets.reserve(work)
        b.work = work

    def _max_new(self, w: Worker) -> int:
        return w.spec.max_new_tokens or self.settings.max_new_tokens

    def _generate(self, group: list[_Batch]) -> None:
        """One model call (through outages) for the prompts of every role in ``group``."""
        items = [(b, item) for b in group for item in b.work]
        lead = group[0].worker
        out = lead.model_calls.run(lambda todo: self._model_call(group, [items[i] for i in todo]),
                                   [item.task.deadline for _, item in items])
        for i, g in sorted(out.generated.items()):
            items[i][0].generated.append((items[i][1], g))
        for i, reason in sorted(out.rejected.items()):
            items[i][0].rejected.append((items[i][1], reason))
        for i in sorted(out.poisoned + out.held):
            items[i][0].failed.append(items[i][1])

    def _model_call(self, group: list[_Batch], items: list[tuple[_Batch, _Work]]) -> list[Generation]:
        """ONE ``backend.generate`` for ``items``; each role's rate limit reserves its own prompts."""
        backend = group[0].worker.backend
        assert backend is not None
        max_new = self._max_new(group[0].worker)
        involved = {b.worker for b, _ in items}
        workers = [w for w in self.workers if w in involved]
        roles = [w.spec.role for w in workers]
        counts = {w: sum(b.worker is w for b, _ in items) for w in workers}
        for _, item in items:
            if item.ctx is not None:
                item.ctx.batch = {"roles": roles, "size": len(items)}
        held: list[tuple[Worker, Reservation]] = []
        used: dict[Worker, int] = dict.fromkeys(workers, 0)
        try:
            for w in workers:
                held.append((w, w.limiter.acquire(counts[w], max_new)))
            gens = traced_model_call([item.span for _, item in items], lambda: self._call(backend, items, max_new),
                                     model=backend.name, role=",".join(roles))
            for (b, _), g in zip(items, gens, strict=True):
                used[b.worker] += g.new_tokens
        finally:
            for w, reservation in held:
                w.limiter.settle(reservation, used[w])
        for w in workers:
            self._batch_roles[w.spec.role].labels(role=w.spec.role).observe(len(roles))
        log.info("model call: %d prompts of roles %s", len(items), ",".join(roles))
        return gens

    def _call(self, backend: ModelBackend, items: list[tuple[_Batch, _Work]], max_new: int) -> list[Generation]:
        prompts = [item.prompt for _, item in items]
        if not self.settings.stream_tokens:
            return list(backend.generate(prompts, max_new_tokens=max_new))
        streams: dict[Worker, TokenStream] = {}
        route: list[tuple[TokenStream, int]] = []
        for b, item in items:
            w = b.worker
            if w not in streams:
                streams[w] = TokenStream(w.events, [], w.spec.role, w.spec.agent)
            streams[w].tasks.append(item.task)
            streams[w].sent.append(0)
            route.append((streams[w], len(streams[w].tasks) - 1))

        def on_tokens(index: int, text: str) -> None:
            stream, local = route[index]
            stream(local, text)

        try:
            return list(backend.generate(prompts, max_new_tokens=max_new, on_tokens=on_tokens))
        finally:
            for stream in streams.values():
                stream.close()

    def _settle(self, b: _Batch) -> None:
        """The role's own ends of the call: budgets, handoffs, dead letters, retries."""
        w = b.worker
        if b.work:
            w.budgets.settle(b.work, b.generated, w.backend.name if w.backend else "")
        if b.generated:
            w._hand_off(b.generated)
        if rejected := b.over + b.rejected:
            w._reject(rejected)
        backoff = None
        if b.failed:
            w.failed += len(b.failed)
            for item in b.failed:
                end_hop(item.span, outcome="retry", error="left pending for a retry")
            w.metrics.failed(len(b.failed))
            attempts = max(item.entry.deliveries for item in b.failed)
            backoff = self.settings.retry_backoff_s * 2 ** (attempts - 1)
        self._finish(b, None, backoff)

    def _finish(self, b: _Batch, exc: BaseException | None, backoff: float | None = None) -> None:
        """Release ``b``'s in-flight state and wake its reader."""
        w = b.worker
        with w._lock:
            w._in_flight = []
        b.exits.close()
        if b.done.done():
            return
        if exc is not None:
            b.done.set_exception(exc)
        else:
            b.done.set_result(backoff)
