"""Chaos run: the three-role pipeline under SIGKILLed workers, a Redis restart and outages, then an audit.

``python -m bench.chaos --runs 200`` (``make chaos``) starts its own ``redis-server`` (AOF,
``appendfsync everysec``), two worker processes per role, submits the runs (5 per second), SIGKILLs a ready
worker every few seconds (one holding pending entries when there is one) and starts a
replacement, kills and restarts Redis once mid-run, with the workers' janitors trimming streams
every 2 s; waits for every run to finish, then counts: submitted, completed, lost (never
finished, not dead-lettered; a pending entry trimmed away would show up here), duplicated (a
run with more than one result, or an agent with more than one scratchpad entry in a run),
dead-lettered, kills and restarts. Exit code 1 if anything was lost or duplicated.

Two outage faults can be added (see :mod:`bench.faults`); neither is the message's fault, so
the target with them is also 0 failed (exit code 1 otherwise):

- ``--model-outages``: the workers use ``BATON_MODEL=http://127.0.0.1:PORT/v1`` against a
  ``baton serve-model`` process (twin or echo) that is SIGKILLed every few seconds and started
  again after up to 12 s (down up to about 15 s with its start-up).
- ``--redis-oom``: ``maxmemory`` is lowered to just above the memory in use (``noeviction``:
  writes are refused with OOM) for up to 15 s at a time, then raised again.

The report adds the seconds spent in outages and the longest run (submit to finish).
``--no-kills`` and ``--no-redis-restart`` leave out the default faults to isolate one kind.

``--threads N`` submits the runs as turns of N threads (``enqueue``, round robin): one turn of a
thread at a time, the next started by the end of the one before. The audit adds, per thread, turns
missing from its history or in it twice, turns out of submission order, and threads left busy.

``--cluster`` runs on a local Redis Cluster of 3 primaries and 3 replicas
(``cluster-node-timeout`` 2000 ms) with 6 partitions; the mid-run Redis fault is then a SIGKILL
of the primary serving partition 0, never restarted: its replica takes over. The report adds
``failover_s``, how long that primary's slots took no writes, and the primaries that served.
"""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.agents.workflow.spec import SEED
from baton.broker import EmbeddedRedis, Keys, connect, live_workers, parse_consumer, submit
from baton.broker.dlq import list_dead
from baton.broker.runs import run_records
from baton.broker.stats import entries_from, pad_entries, stream_stats
from baton.broker.threads import ThreadInfo, get_thread, submit_turn, thread_run_id
from baton.protocol import ProtocolError, Result, RunStatus, Task, decode
from bench.cluster_faults import ClusterTarget
from bench.common import stop_procs
from bench.faults import Faults, ModelOutages, RedisOom

__all__ = ["ChaosConfig", "ChaosReport", "main", "run_chaos"]

log = logging.getLogger("baton.chaos")


@dataclass(slots=True)
class ChaosConfig:
    """What to run and how hard to shake it."""

    runs: int = 200
    workers: int = 2
    model: str = "twin"
    kill_every_s: tuple[float, float] = (2.0, 4.0)
    restart_after_s: float = 0.5
    redis_restart_at: float = 0.4
    timeout_s: float = 600.0
    appendfsync: str = "everysec"
    submit_rate: float = 5.0
    seed: int | None = None
    workdir: Path | None = None
    env: dict[str, str] = field(default_factory=dict)
    kill_workers: bool = True
    redis_restart: bool = True
    model_outages: bool = False
    model_up_s: tuple[float, float] = (3.0, 8.0)
    model_down_s: tuple[float, float] = (1.0, 12.0)
    redis_oom: bool = False
    oom_every_s: tuple[float, float] = (3.0, 8.0)
    oom_s: tuple[float, float] = (1.0, 15.0)
    oom_headroom_bytes: int = 64 * 1024
    cluster: bool = False
    partitions: int = 6
    threads: int = 0

    @property
    def outages(self) -> bool:
        """Whether an outage fault is on (then a failed run is a failure of the harness's target)."""
        return self.model_outages or self.redis_oom


@dataclass(slots=True)
class ChaosReport:
    """The audit of one chaos run."""

    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    duplicated_results: int = 0
    duplicated_pad_entries: int = 0
    missing_pad_entries: int = 0
    dead_lettered: int = 0
    kills: int = 0
    kills_mid_task: int = 0
    restarts: int = 0
    worker_crashes: int = 0
    redis_restarts: int = 0
    stale_commits_refused: int = 0
    duplicate_commits_acked: int = 0
    reclaim_events: int = 0
    janitor_trims: int = 0
    model_outages: int = 0
    model_down_s: float = 0.0
    longest_model_outage_s: float = 0.0
    redis_oom_episodes: int = 0
    redis_oom_s: float = 0.0
    longest_redis_oom_s: float = 0.0
    outage_s: float = 0.0
    longest_run_s: float = 0.0
    p50_run_s: float = 0.0
    runs_per_s: float = 0.0
    wait_replicas: int = 0
    seconds: float = 0.0
    model: str = ""
    appendfsync: str = ""
    cluster_primaries: int = 0
    failover_s: float = 0.0
    threads: int = 0
    thread_turns_missing: int = 0
    thread_turns_duplicated: int = 0
    thread_turns_out_of_order: int = 0
    threads_stuck: int = 0
    lost_runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Nothing lost, nothing duplicated."""
        return not (self.lost or self.duplicated_results or self.duplicated_pad_entries or self.missing_pad_entries
                    or self.thread_turns_missing or self.thread_turns_duplicated or self.thread_turns_out_of_order
                    or self.threads_stuck)

    @property
    def clean(self) -> bool:
        """Nothing lost, duplicated or failed, no worker crashed: the target under outages (no run's fault)."""
        return self.ok and not self.failed and not self.worker_crashes


def _model(name: str) -> str:
    if name == "twin":
        from baton.agents.backends import DEFAULT_MODEL, resolve_model

        return resolve_model(DEFAULT_MODEL)
    return name


class _Pool:
    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[tuple[str, subprocess.Popen[bytes]]] = []
        self.spawned = 0
        self.accounted: set[int] = set()  # pids whose exit is known: killed by the harness, or counted as a crash

    def crashed(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        """Workers that exited on their own since the last call (each reported once)."""
        out = [(r, p) for r, p in self.procs if p.poll() is not None and p.pid not in self.accounted]
        self.accounted.update(p.pid for _, p in out)
        return out

    def spawn(self, role: str) -> None:
        self.spawned += 1
        with open(self.log_dir / f"worker-{role}-{self.spawned}.log", "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "baton", "worker", role], env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        self.procs.append((role, proc))

    def live(self) -> list[tuple[str, subprocess.Popen[bytes]]]:
        return [(r, p) for r, p in self.procs if p.poll() is None]

    def stop(self) -> None:
        stop_procs([p for _, p in self.procs])


def run_chaos(cfg: ChaosConfig) -> ChaosReport:
    """Run the chaos scenario described by ``cfg`` and return its audit."""
    rng = random.Random(cfg.seed)
    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="baton-chaos-"))
    report = ChaosReport(model=cfg.model)
    keys = Keys("baton", cfg.partitions) if cfg.cluster else Keys()
    server: EmbeddedRedis | ClusterTarget
    if cfg.cluster:
        server = ClusterTarget(work / "cluster", keys).start()
        report.cluster_primaries = len(server.primaries())
    else:
        server = EmbeddedRedis(work / "redis", appendfsync=cfg.appendfsync).start()
    report.appendfsync = cfg.appendfsync
    report.wait_replicas = int(cfg.env.get("BATON_WAIT_REPLICAS", "0"))
    model = _model(cfg.model)
    base_env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATON_")},
           "REDIS_URL": server.url, "BATON_MODEL": model, "BATON_BLOCK_MS": "300",
           "BATON_HEARTBEAT_INTERVAL_S": "0.5", "BATON_HEARTBEAT_TTL_S": "2", "BATON_RECLAIM_INTERVAL_S": "0.5",
           "BATON_LEASE_MS": "15000", "BATON_RETRY_BACKOFF_S": "0.1", "BATON_MAX_DELIVERIES": "8",
           "BATON_BATCH_SIZE": "4", "BATON_JANITOR_INTERVAL_S": "2", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1",
           "BATON_PARTITIONS": str(keys.partitions), **cfg.env}
    faults = Faults()
    if cfg.redis_oom:
        faults.oom = RedisOom(every_s=cfg.oom_every_s, oom_s=cfg.oom_s, headroom=cfg.oom_headroom_bytes, rng=rng)
    env = base_env
    if cfg.model_outages:  # workers on HTTP, the model in one server process that the faults kill
        faults.model = ModelOutages(model, work, base_env, up_s=cfg.model_up_s, down_s=cfg.model_down_s, rng=rng)
        env = {**base_env, "BATON_MODEL": faults.model.url}
    pool = _Pool(env, work)
    client = connect(server.url, retries=10)
    started = time.monotonic()
    try:
        if faults.model is not None:
            faults.model.start()
            faults.model.wait_healthy()
        for spec in SEED.roles:
            for _ in range(cfg.workers):
                pool.spawn(spec.role)
        run_ids = ([thread_run_id(keys, _thread_of(i, cfg.threads)) for i in range(cfg.runs)] if cfg.threads
                   else [f"chaos-{i:04d}" for i in range(cfg.runs)])
        _shake(cfg, rng, server, pool, client, keys, run_ids, report, faults)
        report.seconds = time.monotonic() - started
        _audit(client, keys, run_ids, report)
        if cfg.threads:
            _audit_threads(client, keys, cfg.threads, run_ids, report)
    finally:
        _count_faults(faults, report)
        pool.stop()
        if faults.model is not None:
            faults.model.stop()
        _count_logs(work, report)
        client.close()
        server.stop()
        if isinstance(server, ClusterTarget):
            report.failover_s = server.recovered_s or 0.0
    log.info("chaos run in %s", work)
    return report


def _finished(client: Any, keys: Keys, run_ids: list[str]) -> int:
    return sum(rec is not None and rec.ended for rec in run_records(client, keys, run_ids))


def _count_faults(faults: Faults, report: ChaosReport) -> None:
    if faults.model is not None:
        report.model_outages = faults.model.outages
        report.model_down_s = faults.model.down_seconds
        report.longest_model_outage_s = faults.model.longest_s
    if faults.oom is not None:
        report.redis_oom_episodes = faults.oom.episodes
        report.redis_oom_s = faults.oom.seconds
        report.longest_redis_oom_s = faults.oom.longest_s
    report.outage_s = report.model_down_s + report.redis_oom_s


def _shake(cfg: ChaosConfig, rng: random.Random, server: EmbeddedRedis | ClusterTarget, pool: _Pool, client: Any,
           keys: Keys, run_ids: list[str], report: ChaosReport, faults: Faults) -> None:
    deadline = time.monotonic() + cfg.timeout_s
    next_kill = time.monotonic() + rng.uniform(*cfg.kill_every_s)
    respawn: list[tuple[float, str]] = []
    redis_restarted = not cfg.redis_restart
    armed = False  # outage faults start once every worker is ready (start-up is not what they test)
    while len(_ready_pids(client, keys)) < len(SEED.roles) * cfg.workers and time.monotonic() < deadline:
        time.sleep(0.2)  # runs start once the pool is up: their times measure the faults, not start-up
    next_kill = time.monotonic() + rng.uniform(*cfg.kill_every_s)
    started = time.monotonic()
    tasks = [Task(run_id=run_id, role=SEED.entry, task=f"Explain topic {i} of supervised learning.")
             for i, run_id in enumerate(run_ids)]
    while time.monotonic() < deadline:
        try:
            # runs arrive at submit_rate per second, so the kills spread over the whole run
            due = min(len(run_ids), 1 + int((time.monotonic() - started) * cfg.submit_rate))
            while report.submitted < due:  # a retried submit reuses its Task (and message id): no duplicate
                if cfg.threads:  # (a retried turn whose first call landed is not written again)
                    submit_turn(client, keys, tasks[report.submitted], _thread_of(report.submitted, cfg.threads),
                                "enqueue")
                else:
                    submit(client, keys, tasks[report.submitted])
                report.submitted += 1
            done = _finished(client, keys, run_ids)
        except Exception:  # noqa: BLE001 - Redis may be restarting
            done = 0
        if done == len(run_ids):
            faults.settle(client, time.monotonic())
            for _, role in respawn:  # every killed worker is restarted, even after the last run
                pool.spawn(role)
                report.restarts += 1
            return
        now = time.monotonic()
        ready_pids = _ready_pids(client, keys)
        if not armed and len(ready_pids) >= len(SEED.roles) * cfg.workers:
            faults.arm(now)
            armed = True
        if armed:
            faults.tick(client, now)
        for role, proc in pool.crashed():  # restarted as a supervisor would, and counted
            log.warning("worker %d (%s) exited on its own with %s", proc.pid, role, proc.returncode)
            report.worker_crashes += 1
            respawn.append((now + cfg.restart_after_s, role))
        if not redis_restarted and done >= cfg.redis_restart_at * len(run_ids):
            server.restart()
            report.redis_restarts += 1
            redis_restarted = True
            log.info("restarted Redis after %d of %d runs", done, len(run_ids))
        ready = [(r, p) for r, p in pool.live() if p.pid in ready_pids] if cfg.kill_workers else []
        if now >= next_kill and ready:  # only workers past start-up: killing loaders proves nothing
            busy = _busy_pids(client, keys)
            holding = [(r, p) for r, p in ready if p.pid in busy]
            role, proc = rng.choice(holding or ready)
            pool.accounted.add(proc.pid)
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            report.kills += 1
            report.kills_mid_task += bool(holding)
            respawn.append((now + cfg.restart_after_s, role))
            next_kill = now + rng.uniform(*cfg.kill_every_s)
        for at, role in list(respawn):
            if now >= at:
                pool.spawn(role)
                report.restarts += 1
                respawn.remove((at, role))
        time.sleep(0.1)
    faults.settle(client, time.monotonic())  # timed out: leave the model up and Redis writable for the audit


def _ready_pids(client: Any, keys: Keys) -> set[int]:
    """Pids of workers with a heartbeat (they finished loading the model)."""
    try:
        return {w.pid for w in live_workers(client, keys)}
    except Exception:  # noqa: BLE001 - Redis may be restarting
        return set()


def _busy_pids(client: Any, keys: Keys) -> set[int]:
    """Pids of workers holding pending entries right now (parsed from their consumer names)."""
    try:
        stats = stream_stats(client, keys, [s for spec in SEED.roles for s in keys.streams(SEED.name, spec.role)])
    except Exception:  # noqa: BLE001 - Redis may be restarting; kill at random then
        return set()
    holders = [parse_consumer(c.name) for s in stats for g in s.groups for c in g.consumers if c.pending > 0]
    return {h.pid for h in holders if h is not None}


def _audit(client: Any, keys: Keys, run_ids: list[str], report: ChaosReport) -> None:
    wanted = set(run_ids)
    results: Counter[str] = Counter()
    rows = [row for p in range(keys.partitions) for row in entries_from(client, keys.results(p), 0, count=None)]
    for _, raw in rows:
        try:
            msg = decode(raw)
        except ProtocolError:
            continue
        if isinstance(msg, Result):
            results[msg.run_id] += 1
    dead_runs = set()
    for dead in list_dead(client, keys, limit=0):
        if dead.readable:
            report.dead_lettered += 1
            dead_runs.add(dead.letter.run_id)
    agents = [r.agent for r in SEED.roles]
    durations: list[float] = []
    for run_id, rec in zip(run_ids, run_records(client, keys, run_ids), strict=True):
        status = rec.status if rec is not None else ""
        created, finished_at = (rec.created_at, rec.finished_at or rec.updated_at) if rec is not None else (0.0, 0.0)
        if status in (RunStatus.DONE, RunStatus.FAILED) and created and finished_at:
            report.longest_run_s = max(report.longest_run_s, finished_at - created)
            durations.append(finished_at - created)
        if status == RunStatus.DONE:
            report.completed += 1
            for agent in agents:
                n = len(pad_entries(client, keys, run_id, agent))
                report.duplicated_pad_entries += max(0, n - 1)
                report.missing_pad_entries += int(n == 0)
        elif status == RunStatus.FAILED:
            report.failed += 1
        if status != RunStatus.DONE and run_id not in dead_runs:
            report.lost += 1
            report.lost_runs.append(run_id)
    report.p50_run_s = statistics.median(durations) if durations else 0.0
    report.runs_per_s = report.completed / report.seconds if report.seconds else 0.0
    report.duplicated_results = sum(n - 1 for run_id, n in results.items() if run_id in wanted and n > 1)
    report.duplicated_results += sum(n for run_id, n in results.items() if run_id not in wanted)


def _thread_of(i: int, threads: int) -> str:
    return f"chaos-t{i % threads}"


def _audit_threads(client: Any, keys: Keys, threads: int, run_ids: list[str], report: ChaosReport) -> None:
    """Each thread's history holds each of its runs once, in submission order, and the thread is idle."""
    report.threads = threads
    for t in range(threads):
        mine = run_ids[t::threads]
        info = wait_released(client, keys, _thread_of(t, threads))
        if info is None:
            report.thread_turns_missing += len(mine)
            continue
        seen = Counter(turn.run_id for turn in info.turns)
        report.thread_turns_duplicated += sum(n - 1 for n in seen.values() if n > 1)
        report.thread_turns_missing += sum(1 for r in mine if r not in seen)
        order = [turn.run_id for turn in info.turns if turn.run_id in set(mine)]
        report.thread_turns_out_of_order += int(order != [r for r in mine if r in seen])
        report.threads_stuck += int(bool(info.active or info.queued))


def wait_released(client: Any, keys: Keys, thread: str, timeout_s: float = 10.0) -> ThreadInfo | None:
    """The thread once its last turn's end released it (that follows the run's commit), or as it is then."""
    deadline = time.monotonic() + timeout_s
    while True:
        info = get_thread(client, keys, thread)
        if info is None or not (info.active or info.queued) or time.monotonic() > deadline:
            return info
        time.sleep(0.1)


def _count_logs(work: Path, report: ChaosReport) -> None:
    for path in work.glob("worker-*.log"):
        text = path.read_text(errors="replace")
        report.stale_commits_refused += text.count("was reclaimed by another worker")
        report.duplicate_commits_acked += text.count("had already been handed off")
        report.reclaim_events += text.count("entries from dead consumer") + text.count("entries idle past the")
        report.janitor_trims += text.count("janitor: trimmed {")


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def cli(
    runs: Annotated[int, typer.Option(help="Runs to submit.")] = 200,
    workers: Annotated[int, typer.Option(help="Worker processes per role.")] = 2,
    model: Annotated[str, typer.Option(help="'twin' (the offline tiny-gpt2) or 'echo'.")] = "twin",
    seed: Annotated[int | None, typer.Option(help="Random seed for the kill schedule.")] = None,
    timeout: Annotated[float, typer.Option(help="Give up after this many seconds.")] = 600.0,
    kill_every: Annotated[tuple[float, float], typer.Option(help="Seconds between kills: min max.")] = (2.0, 4.0),
    appendfsync: Annotated[str, typer.Option(help="Redis AOF fsync policy: everysec or always.")] = "everysec",
    submit_rate: Annotated[float, typer.Option(help="Runs submitted per second.")] = 5.0,
    json_out: Annotated[Path | None, typer.Option("--json", help="Also write the report as JSON here.")] = None,
    kills: Annotated[bool, typer.Option(help="SIGKILL workers every few seconds.")] = True,
    redis_restart: Annotated[bool, typer.Option(help="Kill and restart Redis once mid-run.")] = True,
    model_outages: Annotated[bool, typer.Option(
        "--model-outages", help="HTTP-backed workers; kill and restart the model server (down up to ~15 s).")] = False,
    redis_oom: Annotated[bool, typer.Option(
        "--redis-oom", help="Lower Redis maxmemory under load (writes refused with OOM), then raise it.")] = False,
    cluster: Annotated[bool, typer.Option(
        "--cluster", help="A local 3+3 Redis Cluster, 6 partitions; kill a primary mid-run instead.")] = False,
    wait_replicas: Annotated[int, typer.Option(
        help="BATON_WAIT_REPLICAS of the workers: WAIT for this many replicas after each commit.")] = 0,
    threads: Annotated[int, typer.Option(
        help="Submit the runs as turns of this many threads (enqueue); audit their histories.")] = 0,
) -> None:
    """Submit RUNS runs, SIGKILL workers, restart Redis and inject outages meanwhile, then audit."""
    from rich.console import Console
    from rich.table import Table

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = ChaosConfig(runs=runs, workers=workers, model=model, seed=seed, timeout_s=timeout, kill_every_s=kill_every,
                      appendfsync=appendfsync, submit_rate=submit_rate, kill_workers=kills,
                      redis_restart=redis_restart, model_outages=model_outages, redis_oom=redis_oom, cluster=cluster,
                      threads=threads, env={"BATON_WAIT_REPLICAS": str(wait_replicas)} if wait_replicas else {})
    report = run_chaos(cfg)
    table = Table("measure", "value", title=f"chaos: {runs} runs, {workers} workers per role, model {model}")
    for k, v in asdict(report).items():
        if k != "lost_runs":
            table.add_row(k, f"{v:.1f}" if isinstance(v, float) else str(v))
    Console().print(table)
    if json_out:
        json_out.write_text(json.dumps(asdict(report), indent=2))
    if not report.ok:
        Console(stderr=True).print(f"chaos: LOST {report.lost} {report.lost_runs[:10]} or DUPLICATED "
                                   f"{report.duplicated_results + report.duplicated_pad_entries}")
        raise typer.Exit(1)
    if cfg.outages and not report.clean:
        Console(stderr=True).print(f"chaos: {report.failed} runs FAILED under outages (target: 0)")
        raise typer.Exit(1)


def main() -> None:
    """Entry point of ``python -m agents.chaos``."""
    app()


if __name__ == "__main__":
    main()
