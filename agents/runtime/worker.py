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
import random
import signal
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from types import FrameType
from typing import Any

import msgspec
import redis

from baton.agents.backends import ModelBackend, load_backend
from baton.agents.runtime.guards import RunGuard
from baton.agents.runtime.logs import bind, context
from baton.agents.runtime.metrics import WorkerMetrics
from baton.agents.runtime.prompt import handoff_text
from baton.agents.runtime.routing import gather, needs_routing, plan_outputs
from baton.agents.runtime.steps import RoleSteps, StepContext
from baton.agents.settings import Settings
from baton.agents.workflow.spec import RoleSpec, Workflow
from baton.broker import (
    Entry,
    Handoff,
    Keys,
    Outcome,
    RoleStreams,
    cancelled_and_scratchpads,
    commit,
    connect,
    scratchpads,
)
from baton.broker.janitor import Janitor
from baton.protocol import (
    DEAD_LETTER_MAX_BYTES,
    DeadLetter,
    Error,
    Hop,
    ProtocolError,
    Result,
    Task,
    decode,
    encode,
    peek_ids,
)

__all__ = ["Worker", "consumer_name"]

log = logging.getLogger("baton.worker")
_JSON = msgspec.json.Encoder()  # one encoder for every scratchpad entry (faster than json.dumps)


def _torch_threads() -> int | None:
    """Intra-op threads of this process's torch, or None when torch is not loaded (echo model)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _grace_over(grace_s: float) -> None:
    log.warning("in-flight work did not finish within the %.0fs grace period: exiting, it stays pending", grace_s)
    os._exit(1)


def consumer_name(role: str) -> str:
    """A consumer name unique to this process: role, host, pid and a random suffix."""
    return f"{role}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"


@dataclass(slots=True)
class _Work:
    entry: Entry
    task: Task
    prompt: str = ""
    started: float = 0.0
    ctx: StepContext | None = None


class Worker:
    """A worker process for one role of a workflow."""

    def __init__(
        self,
        settings: Settings,
        workflow: Workflow,
        role: str,
        *,
        backend: ModelBackend | None = None,
        client: redis.Redis | None = None,
    ) -> None:
        self.settings = settings
        self.workflow = workflow
        self.spec: RoleSpec = workflow.role(role)
        self.keys = Keys(settings.prefix, settings.partitions)
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        self.consumer = consumer_name(role)
        self.streams = RoleStreams(self.client, self.keys, role, self.consumer)
        self.partition_of = {s: p for p, s in enumerate(self.streams.streams)}
        self.backend = backend
        self.stopping = threading.Event()
        self.processed = 0
        self.failed = 0
        self.dead_lettered = 0
        self.reclaimed = 0
        self.guard = RunGuard(self.client, self.keys, role)
        self.janitor = Janitor(self.client, self.keys, [role], interval_s=settings.janitor_interval_s,
                               results_retention_s=settings.results_retention_s, record_ttl_s=settings.record_ttl_s)
        self.metrics = WorkerMetrics(role)
        self.steps = RoleSteps(self.client, self.keys, workflow, self.spec, record_ttl_s=settings.record_ttl_s)
        self._in_flight: list[Entry] = []
        self._lock = threading.Lock()
        self._signals = 0
        self._last_read = 0  # entries the previous read returned (lingering is for busy workers)

    # lifecycle ----------------------------------------------------------------
    def load(self) -> None:
        """Load the model backend (the slow part of start-up)."""
        if self.backend is None:
            self.backend = load_backend(self.spec.model or self.settings.model, threads=self.settings.torch_threads)

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: stop after the batch in flight; a second signal exits at once."""

        def handler(signum: int, frame: FrameType | None) -> None:
            self._signals += 1
            if self._signals > 1:
                log.warning("second signal: exiting now, in-flight entries stay pending")
                os._exit(1)
            log.info("signal %s: finishing in-flight work, then exiting", signal.Signals(signum).name)
            self.stopping.set()
            grace = threading.Timer(self.settings.shutdown_grace_s, _grace_over, args=(self.settings.shutdown_grace_s,))
            grace.daemon = True  # past the grace period, exit like a second signal would
            grace.start()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def run(self) -> int:
        """Serve until stopped; return the process exit code."""
        context(role=self.spec.role, consumer=self.consumer)
        if self.settings.metrics_port:
            self.metrics.serve(self.settings.metrics_port)
        self.load()
        self.streams.ensure_groups()
        self._beat()
        beater = threading.Thread(target=contextvars.copy_context().run, args=(self._heartbeat_loop,),
                                  name="heartbeat", daemon=True)
        beater.start()
        log.info("worker %s ready (role %s, agent %s)", self.consumer, self.spec.role, self.spec.agent)
        pending, next_reclaim, failures = True, 0.0, 0
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    claimed = self.streams.reclaim(lease_ms=self.settings.lease_ms)
                    self.reclaimed += claimed
                    self.metrics.reclaimed(claimed)
                    pending = pending or claimed > 0
                    next_reclaim = time.monotonic() + self.settings.reclaim_interval_s
                    self.janitor.maybe_sweep()
                entries = self._read(pending)
                if pending and not entries:
                    pending = False
                    continue
                if entries:
                    pending = self.process(entries) or pending
                failures = 0
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                failures += 1
                self._back_off(failures, "Redis unavailable", exc)
                pending = True
            except redis.ResponseError as exc:
                if str(exc).startswith("NOPERM"):
                    raise  # a misconfigured ACL: fail loudly rather than spin
                failures += 1
                self._back_off(failures, "Redis refused a command", exc)
                pending = True
        self._shutdown(beater)
        return 0

    def _back_off(self, failures: int, problem: str, exc: Exception) -> None:
        """Log ``problem`` and wait a jittered exponential delay (cut short by shutdown)."""
        delay = min(10.0, self.settings.retry_backoff_s * 2 ** min(failures, 6)) * random.uniform(0.5, 1.5)
        log.warning("%s (%s); retrying in %.1fs", problem, exc, delay)
        self.stopping.wait(delay)

    def _shutdown(self, beater: threading.Thread) -> None:
        self.stopping.set()
        beater.join(timeout=2)
        with contextlib.suppress(redis.RedisError):
            self.streams.forget()
        log.info(
            "worker %s stopped: %d processed, %d dead-lettered, %d reclaimed",
            self.consumer, self.processed, self.dead_lettered, self.reclaimed,
        )

    def _read(self, pending: bool) -> list[Entry]:
        """Up to ``batch_size`` entries. A short read lingers for more only while work is flowing
        (the previous read brought more than one entry): a lone task on an idle worker is not held."""
        size = self.settings.batch_size
        entries = self.streams.read(pending=pending, count=size, block_ms=self.settings.block_ms)
        flowing, self._last_read = self._last_read > 1, len(entries)
        if not pending and flowing and 0 < len(entries) < size and self.settings.linger_ms > 0:
            time.sleep(self.settings.linger_ms / 1000)
            entries += self.streams.read(pending=False, count=size - len(entries), block_ms=None)
        return entries

    # heartbeat and lease -----------------------------------------------------------
    def _beat(self) -> None:
        info = {
            "consumer": self.consumer, "role": self.spec.role, "host": socket.gethostname(),
            "pid": os.getpid(), "processed": self.processed, "at": time.time(),
            "metrics_port": self.metrics.port, "torch_threads": _torch_threads(),
        }
        self.streams.beat(json.dumps(info).encode(), self.settings.heartbeat_ttl_s)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.settings.heartbeat_interval_s):
            try:
                self._beat()
                with self._lock:
                    in_flight = list(self._in_flight)
                if in_flight:
                    self.streams.touch(in_flight)
            except redis.RedisError as exc:
                log.debug("heartbeat failed: %s", exc)

    # processing ---------------------------------------------------------------
    def process(self, entries: list[Entry]) -> bool:
        """Handle one batch; return True when entries were left pending for a retry."""
        with self._lock:
            self._in_flight = list(entries)
        try:
            with self.metrics.in_flight(len(entries)):
                return self._process(entries)
        finally:
            with self._lock:
                self._in_flight = []

    def _process(self, entries: list[Entry]) -> bool:
        dead: list[Handoff] = []
        work: list[_Work] = []
        self.metrics.retried(sum(e.deliveries > 1 for e in entries))
        for entry in entries:
            reason, task = self._admit(entry)
            if reason:
                dead.append(self._dead_letter(entry, reason, task))
            elif task is not None:
                work.append(_Work(entry, task))
        if dead:
            self._commit(dead)
            self.dead_lettered += len(dead)
            self.metrics.dead_lettered(len(dead))
        cancelled, early = self._before_run(work)  # one round trip: cancelled flags (+ scratchpads)
        halts = self.guard.halts([(w.entry, w.task) for w in work], cancelled=cancelled)  # cancelled, late
        if halts:
            self._commit(list(halts.values()))
            work = [w for w in work if w.entry.id not in halts]
        if self.spec.join:  # fan-in: parts wait (acked) until their group is complete
            work = gather(self.client, self.keys, self.streams.group, self.consumer, work)
        if not work:
            return False
        memories = self._memories([w.task for w in work]) if early is None else [early[w.entry.id] for w in work]
        for w, memory in zip(work, memories, strict=True):
            w.ctx = self.steps.before(w.task)  # declared tool steps, shared memory
            w.prompt = self.steps.render(w.task, memory, w.ctx)
            w.started = time.time()
        assert self.backend is not None
        max_new = self.spec.max_new_tokens or self.settings.max_new_tokens
        try:
            generations = self.backend.generate([w.prompt for w in work], max_new_tokens=max_new)
        except Exception as exc:  # noqa: BLE001 - any model failure is retried, then dead-lettered
            if len(work) > 1:  # one bad prompt must not fail its batch-mates: run them one by one
                log.warning("batched model call failed (%s); retrying its %d prompts one by one", exc, len(work))
                return any([self._process([w.entry]) for w in work])
            self.failed += len(work)
            self.metrics.failed(len(work))
            attempts = max(w.entry.deliveries for w in work)
            delay = self.settings.retry_backoff_s * 2 ** (attempts - 1)
            log.warning("model call failed (%s: %s); retry %d in %.1fs", type(exc).__name__, exc, attempts, delay)
            self.stopping.wait(delay)
            return True
        finished = time.time()
        handoffs = [
            self._handoff(w, g.text, g.new_tokens, g.truncated, finished)
            for w, g in zip(work, generations, strict=True)
        ]
        outcomes = self._commit(handoffs)
        self.processed += sum(o is Outcome.COMMITTED for o in outcomes)
        for w, g, o in zip(work, generations, outcomes, strict=True):
            if o is Outcome.COMMITTED:
                self.metrics.processed()
                self.metrics.step(finished - w.started, g.new_tokens)
                with bind(run_id=w.task.run_id, msg_id=w.task.id):
                    log.info("hop %d handed to %s: %d tokens in %.3fs", w.task.hop, self.spec.next or "results",
                             g.new_tokens, finished - w.started)
        return False

    def _admit(self, entry: Entry) -> tuple[str, Task | None]:
        """Return (reason to dead-letter, task); an empty reason admits the task."""
        if entry.data is None:
            return "stream entry has no 'msg' field", None
        if entry.deliveries > self.settings.max_deliveries:
            return (
                f"delivered {entry.deliveries} times (max_deliveries={self.settings.max_deliveries}); "
                "the message failed or killed its worker every time",
                None,
            )
        try:
            msg = decode(entry.data)
        except ProtocolError as exc:
            return str(exc), None
        match msg:
            case Task(role=role) if role != self.spec.role:
                return f"task for role {role!r} arrived on the stream of role {self.spec.role!r}", msg
            case Task(hop=hop) if hop >= (msg.max_hops or self.settings.max_hops):
                return f"run exceeded the hop limit ({hop} hops)", msg
            case Task():
                return "", msg
            case _:
                return f"unexpected message type {type(msg).__name__!r} on a task stream", None

    def _before_run(self, work: list[_Work]) -> tuple[list[bool], dict[str, list[dict[str, Any]]] | None]:
        """Cancelled flags of ``work`` and, for run-scoped memory without fan-in, its scratchpads
        (by entry id), read in one round trip; ``None`` when memories must be read later."""
        if not work:
            return [], None
        early = self.spec.memory == "run" and not self.spec.join
        pads = [(w.task.run_id, self.spec.agent) for w in work] if early else []
        flags, pads_read = cancelled_and_scratchpads(self.client, self.keys, [w.task.run_id for w in work], pads)
        return flags, ({w.entry.id: m for w, m in zip(work, pads_read, strict=True)} if early else None)

    def _memories(self, tasks: list[Task]) -> list[list[dict[str, Any]]]:
        if (long_term := self.steps.memories(tasks)) is not None:
            return long_term
        if self.spec.memory != "run":
            return [[] for _ in tasks]
        return scratchpads(self.client, self.keys, [(t.run_id, self.spec.agent) for t in tasks])

    def _handoff(self, w: _Work, output: str, tokens: int, truncated: bool, finished: float) -> Handoff:
        task, entry = w.task, w.entry
        hop = Hop(role=self.spec.role, consumer=self.consumer, msg_id=task.id,
                  started=w.started, finished=finished, tokens=tokens)
        meta = {"msg_id": task.id, "consumer": self.consumer, "hop": task.hop, "started": w.started,
                "finished": finished, "tokens": tokens, "truncated": truncated}
        fields = self.steps.after(task, w.prompt, output, w.ctx or StepContext())  # parsed tool calls, shared
        meta |= self.steps.meta(task, w.ctx)  # tool calls and results, fan-out part (nothing for the seed)
        pad_value = _JSON.encode({"task": task.task, "response": output, "meta": meta})
        common = {"run_id": task.run_id, "parent_id": task.id, "hop": task.hop + 1,
                  "trace": (*task.trace, hop)}
        p = self.keys.partition(task.run_id)
        record: dict[str, str | float | int] = {"updated_at": finished, "hops": task.hop + 1}
        if needs_routing(self.spec, task):  # routes, fan-out, parts, richer handoff templates
            outputs, routed = plan_outputs(self.spec, task, output, fields, self.keys, common, finished)
            record |= routed
        elif self.spec.next:
            nxt = Task(role=self.spec.next, task=handoff_text(self.spec, output), workflow=task.workflow,
                       deadline=task.deadline, max_hops=task.max_hops, **common)
            outputs = [(self.keys.run_stream(self.spec.next, task.run_id), encode(nxt))]
            record |= {"status": "running", "role": self.spec.next}
        else:
            result = Result(role=self.spec.role, output=output, **common)
            outputs = [(self.keys.results(p), encode(result))]
            record |= {"status": "done", "role": "", "result": output, "finished_at": finished}
        return Handoff(entry=entry, run_id=task.run_id, msg_id=task.id, outputs=outputs,
                       pad=(self.spec.agent, entry.id, pad_value), record=record, partition=p)

    def _dead_letter(self, entry: Entry, reason: str, task: Task | None) -> Handoff:
        p = self.partition_of.get(entry.stream, 0)
        raw = entry.data or b""
        run_id, msg_id = (task.run_id, task.id) if task else peek_ids(raw, limit=DEAD_LETTER_MAX_BYTES)
        with bind(run_id=run_id or "", msg_id=msg_id or ""):
            log.warning("dead-lettering entry %s of %s: %s", entry.id, entry.stream, reason)
        dl = DeadLetter(run_id=run_id or "", role=self.spec.role, reason=reason,
                        original=raw.decode("utf-8", "replace"), stream=entry.stream,
                        entry_id=entry.id, attempts=entry.deliveries)
        outputs = [(self.keys.dead(p), encode(dl))]
        record: dict[str, str | float | int] = {}
        if run_id and self.keys.partition(run_id) == p:
            err = Error(run_id=run_id, role=self.spec.role, reason=reason)
            outputs.append((self.keys.results(p), encode(err)))
            record = {"status": "failed", "error": reason, "role": self.spec.role, "updated_at": time.time()}
        else:
            run_id = None
        return Handoff(entry=entry, run_id=run_id, msg_id=f"dead:{entry.stream}:{entry.id}",
                       outputs=outputs, record=record, partition=p)

    def _commit(self, handoffs: list[Handoff]) -> list[Outcome]:
        outcomes = commit(self.client, self.keys, self.streams.group, self.consumer, handoffs,
                          record_ttl_s=self.settings.record_ttl_s)
        for h, o in zip(handoffs, outcomes, strict=True):
            with bind(run_id=h.run_id or "", msg_id=h.msg_id):
                if o is Outcome.STALE:
                    log.warning("entry %s was reclaimed by another worker; discarded this result", h.entry.id)
                elif o is Outcome.DUPLICATE:
                    log.info("entry %s had already been handed off; acked the redelivery", h.entry.id)
        return outcomes
