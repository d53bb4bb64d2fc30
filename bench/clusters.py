"""Worker processes of one configuration (baton or Celery) and the load the driver puts on them.

A cluster is started, measured (cold start, one throughput burst, sequential single runs,
worker RSS) and stopped inside one repeat, so every repeat pays its own start-up and sees the
same machine state as the configurations interleaved with it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from bench.common import ROOT, cpu_seconds, rss_mib, task_text, uss_mib

__all__ = ["BatonCluster", "CeleryCluster", "Measure", "measure"]


@dataclass
class Measure:
    """What one configuration produced in one repeat."""

    runs_per_s: float = float("nan")
    latencies: list[float] = field(default_factory=list)
    rss_mib: list[float] = field(default_factory=list)
    peak_rss_mib: list[float] = field(default_factory=list)
    uss_mib: list[float] = field(default_factory=list)
    cold_ready_s: list[float] = field(default_factory=list)
    cold_first_result_s: float = float("nan")
    errors: int = 0
    server_rss_mib: list[float] = field(default_factory=list)
    cpu_s_per_run: float = float("nan")
    broker_cpu_s_per_run: float = float("nan")
    """``redis-server``'s and the driver's CPU per run in a steady state (``BatonCluster.sustained``)."""


class _Procs:
    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []
        self.spawned_at: dict[int, float] = {}

    def spawn(self, name: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.log_dir / f"{name}-{len(self.procs)}.log", "wb")  # noqa: SIM115
        proc = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT,
                                start_new_session=True)
        self.spawned_at[proc.pid] = time.monotonic()
        self.procs.append(proc)
        return proc

    def check_alive(self) -> None:
        for p in self.procs:
            if p.poll() is not None:
                logs = "\n".join(f.read_text()[-2000:] for f in sorted(self.log_dir.glob("*.log")))
                raise RuntimeError(f"worker {p.args} exited with {p.returncode}:\n{logs}")

    def stop(self, timeout: float = 15) -> None:
        for p in self.procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait()

    def rss(self, m: Measure, children: bool) -> None:
        for p in self.procs:
            if p.poll() is None:
                now, peak = rss_mib(p.pid, children=children)
                m.rss_mib.append(now)
                m.peak_rss_mib.append(peak)
                if not children:
                    m.uss_mib.append(uss_mib(p.pid))


class BatonCluster:
    """``python -m agents worker ROLE`` processes, ``per_role`` for each role of the seed chain;
    or ``all_roles`` processes of ``baton worker --all-roles`` (cross-role batching) instead."""

    def __init__(self, url: str, env: dict[str, str], log_dir: Path, *, per_role: int = 1,
                 roles: tuple[str, ...] = (), all_roles: int = 0) -> None:
        from baton.broker import Keys, connect
        from baton.broker.results import ResultsReader

        self.roles = roles
        self.all_roles = all_roles
        self.url = url
        self.env = env
        self.per_role = per_role
        self.keys = Keys()
        self.client = connect(url)  # the connection ``baton.Client`` holds (its packer, its timeouts)
        self.procs = _Procs(log_dir)
        self.extra_pids: list[int] = []
        """Other processes whose CPU time the throughput burst counts (a model server)."""
        self._results = ResultsReader(self.client, self.keys, start="0-0")

    def start(self, m: Measure, timeout: float = 120) -> None:
        """Spawn the workers, submit one run at once; record spawn->heartbeat and ->first result."""
        from baton.agents.workflow.spec import SEED
        from baton.broker import live_workers

        self.client.flushall()
        t0 = time.monotonic()
        for _ in range(self.all_roles):
            self.procs.spawn("baton-all-roles", [sys.executable, "-m", "baton", "worker", "--all-roles"], self.env)
        for spec in SEED.order() if not self.all_roles else []:
            if self.roles and spec.role not in self.roles:
                continue
            for _ in range(self.per_role):
                self.procs.spawn(f"baton-{spec.role}", [sys.executable, "-m", "baton", "worker", spec.role],
                                 self.env)
        first = self._submit(task_text(0)) if not self.roles else ""
        ready: dict[int, float] = {}
        deadline = time.monotonic() + timeout
        want = len(self.procs.procs)
        while len(ready) < want:
            for info in live_workers(self.client, self.keys):  # an all-roles process beats once per role
                pid = info.pid
                if pid in self.procs.spawned_at and pid not in ready:
                    ready[pid] = time.monotonic() - self.procs.spawned_at[pid]
            self.procs.check_alive()
            if time.monotonic() > deadline:
                raise TimeoutError("baton workers did not become ready")
            time.sleep(0.01)
        m.cold_ready_s = list(ready.values())
        if first:
            self._wait({first}, timeout)
            m.cold_first_result_s = time.monotonic() - t0

    def _submit(self, text: str) -> str:
        from baton.agents.workflow.spec import SEED
        from baton.broker import submit
        from baton.protocol import Task

        task = Task(run_id=os.urandom(16).hex(), role=SEED.entry, task=text, workflow=SEED.name)
        return submit(self.client, self.keys, task)

    def _wait(self, run_ids: set[str], timeout: float = 300) -> int:
        """Read the results stream until every run in ``run_ids`` reported; return errors."""
        from baton.protocol import Error

        pending, errors = set(run_ids), 0
        deadline = time.monotonic() + timeout
        while pending:
            for msg in self._results.read(1000, count=1000):
                if msg.run_id in pending:
                    pending.discard(msg.run_id)
                    errors += isinstance(msg, Error)
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pending)} baton runs unfinished")
            if not self._results.arrived:
                self.procs.check_alive()
        return errors

    def throughput(self, m: Measure, runs: int) -> None:
        """Submit ``runs`` runs at once and wait for all; runs/s over the whole burst."""
        pids = [p.pid for p in self.procs.procs] + self.extra_pids
        cpu0, t0 = cpu_seconds(pids), time.perf_counter()
        ids = {self._submit(task_text(i)) for i in range(runs)}
        m.errors += self._wait(ids)
        m.runs_per_s = runs / (time.perf_counter() - t0)
        m.cpu_s_per_run = (cpu_seconds(pids) - cpu0) / runs

    def sustained(self, m: Measure, *, in_flight: int, seconds: float, warmup_s: float, server_pid: int = 0) -> None:
        """Steady state: a closed loop keeping ``in_flight`` runs outstanding (a new run per result);
        runs/s = results in the ``seconds`` after ``warmup_s`` seconds of the same load. CPU per run
        over the same window: the workers' (``m.cpu_s_per_run``), and the ``redis-server`` of
        ``server_pid`` with this driver's (``m.broker_cpu_s_per_run``)."""
        from baton.protocol import Error

        n = 0
        outstanding = {self._submit(task_text(n := n + 1)) for _ in range(in_flight)}
        start = time.monotonic()
        window, done = (start + warmup_s, start + warmup_s + seconds), 0
        workers = [p.pid for p in self.procs.procs]
        cpu0: tuple[float, float, float] | None = None
        while time.monotonic() < window[1]:
            if cpu0 is None and time.monotonic() >= window[0]:
                cpu0 = (cpu_seconds(workers), cpu_seconds([server_pid] if server_pid else []), time.process_time())
            for msg in self._results.read(1000, count=1000):
                if msg.run_id in outstanding:
                    outstanding.discard(msg.run_id)
                    m.errors += isinstance(msg, Error)
                    done += window[0] <= time.monotonic()
                    outstanding.add(self._submit(task_text(n := n + 1)))
            if not self._results.arrived:
                self.procs.check_alive()
        m.runs_per_s = done / seconds
        if cpu0 is not None and done:
            m.cpu_s_per_run = (cpu_seconds(workers) - cpu0[0]) / done
            if server_pid:
                server = cpu_seconds([server_pid]) - cpu0[1]
                m.broker_cpu_s_per_run = (server + time.process_time() - cpu0[2]) / done
        self._wait(outstanding)

    def latency(self, m: Measure, runs: int) -> None:
        """Sequential single runs: submit one, wait for its result, repeat."""
        for i in range(runs):
            t0 = time.perf_counter()
            m.errors += self._wait({self._submit(task_text(i))})
            m.latencies.append(time.perf_counter() - t0)

    def stop(self, m: Measure) -> None:
        """Record the RSS (now and peak) of every worker, then SIGTERM them."""
        self.procs.rss(m, children=False)
        self.procs.stop()
        self.client.close()


class CeleryCluster:
    """One ``celery worker`` per role queue, prefork pool with concurrency 1."""

    def __init__(self, url: str, env: dict[str, str], log_dir: Path) -> None:
        self.url = url
        self.env = {**env, "BENCH_CELERY_URL": url}
        self.client = redis.Redis.from_url(url)
        self.procs = _Procs(log_dir)
        self.missed = 0
        """Results whose pub/sub notification the driver's result consumer never delivered."""

    def start(self, m: Measure, timeout: float = 120) -> None:
        """Spawn the workers and wait for one chain's result (spawn -> first result)."""
        os.environ["BENCH_CELERY_URL"] = self.url
        from bench import celery_app

        self.client.flushall()
        celery_app.app.conf.broker_url = celery_app.app.conf.result_backend = self.url
        t0 = time.monotonic()
        for role, queue in celery_app.QUEUES.items():
            argv = [sys.executable, "-m", "celery", "-A", "bench.celery_app", "worker", "-Q", queue,
                    "-n", f"{role}@%h", "--pool", "prefork", "--concurrency", "1", "--loglevel", "WARNING",
                    "--without-gossip", "--without-mingle", "--without-heartbeat"]
            self.procs.spawn(f"celery-{role}", argv, self.env)
        self._get(celery_app.run_chain(task_text(0), os.urandom(16).hex()), time.monotonic() + timeout)
        m.cold_first_result_s = time.monotonic() - t0

    def throughput(self, m: Measure, runs: int) -> None:
        """Start ``runs`` chains at once and wait for every result."""
        from bench import celery_app

        t0 = time.perf_counter()
        results = [celery_app.run_chain(task_text(i), os.urandom(16).hex()) for i in range(runs)]
        deadline = time.monotonic() + 300
        for r in results:
            self._get(r, deadline)
        m.runs_per_s = runs / (time.perf_counter() - t0)

    def latency(self, m: Measure, runs: int) -> None:
        """Sequential single chains."""
        from bench import celery_app

        for i in range(runs):
            t0 = time.perf_counter()
            self._get(celery_app.run_chain(task_text(i), os.urandom(16).hex()), time.monotonic() + 120)
            m.latencies.append(time.perf_counter() - t0)

    def _get(self, result: Any, deadline: float) -> Any:
        """``result.get()`` as a Celery user waits (the Redis backend's pub/sub), bounded by ``deadline``
        and never hung by a lost notification: each wait lasts at most a second, after which the result
        key is read directly and, when the chain finished, its result is taken from there and handed to
        the result consumer, as Celery itself does when its pub/sub connection is re-made
        (``ResultConsumer._reconnect_pubsub``). With the notifications arriving this costs nothing; a
        notification the consumer missed (seen here: a burst hanging for minutes in the pub/sub wait)
        costs at most a second instead of the deadline. (``get``'s own ``on_interval`` cannot do this:
        Celery wraps it in a promise, which calls it once, not once per interval.)"""
        from celery.exceptions import TimeoutError as CeleryTimeout

        backend = result.backend
        key = backend.get_key_for_task(result.id)
        while True:
            try:
                return result.get(timeout=max(0.1, min(1.0, deadline - time.monotonic())))
            except CeleryTimeout:
                pass
            raw = backend.client.get(key)
            meta = backend.decode_result(raw) if raw is not None else None
            if meta is not None and meta["status"] in backend.READY_STATES:
                self.missed += 1
                backend.result_consumer.on_state_change(meta, None)
                return meta["result"]
            self.procs.check_alive()
            if time.monotonic() >= deadline:
                raise TimeoutError(f"a Celery chain gave no result in time (task {result.id}; "
                                   f"{self.missed} lost result notifications recovered so far)")

    def stop(self, m: Measure) -> None:
        """Record RSS (main process + its pool child, now and peak), then stop the workers."""
        self.procs.rss(m, children=True)
        self.procs.stop()
        self.client.close()


def measure(cluster: BatonCluster | CeleryCluster, runs: int, latency_runs: int) -> Measure:
    """Start ``cluster``, a burst of ``runs`` runs, ``latency_runs`` single runs, then stop it."""
    m = Measure()
    try:
        cluster.start(m)
        cluster.throughput(m, runs)
        cluster.latency(m, latency_runs)
    finally:
        cluster.stop(m)
    return m
