"""Chaos run: the three-role pipeline under SIGKILLed workers, a Redis restart and outages, then an audit.

``python -m bench.chaos --runs 200`` (``make chaos``) starts its own ``redis-server`` (AOF,
``appendfsync everysec``), two worker processes per role, submits the runs (5 per second), SIGKILLs a ready
worker every few seconds (one holding pending entries when there is one; one worker of a role at a
time, the next kill of that role once its replacement is ready) and starts a replacement, kills
and restarts Redis once mid-run, with the workers' janitors trimming streams every 2 s; waits for
every run to finish, then counts: submitted, completed, lost (never finished, not dead-lettered;
a pending entry trimmed away would show up here), duplicated (a run with more than one result, or
an agent with more than one scratchpad entry in a run), dead-lettered, kills and restarts. Exit
code 1 if anything was lost or duplicated.

Two outage faults can be added (see :mod:`bench.faults`); neither is the message's fault, so
the target with them is also 0 failed (exit code 1 otherwise):

- ``--model-outages``: the workers use ``BATON_MODEL=http://127.0.0.1:PORT/v1`` against a
  ``baton serve-model`` process (twin or echo) that is SIGKILLed every few seconds and answers
  again after 1-12 s, or after its start-up when that is longer (see :mod:`bench.faults`).
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
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.agents.workflow.spec import SEED
from baton.broker import EmbeddedRedis, Keys, connect, live_workers, parse_consumer, submit
from baton.broker.runs import run_records
from baton.broker.stats import stream_stats
from baton.broker.threads import submit_turn, thread_run_id
from baton.protocol import Task
from bench.chaos_audit import ChaosReport, audit_runs, audit_threads, count_logs, thread_of
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
        run_ids = ([thread_run_id(keys, thread_of(i, cfg.threads)) for i in range(cfg.runs)] if cfg.threads
                   else [f"chaos-{i:04d}" for i in range(cfg.runs)])
        _shake(cfg, rng, server, pool, client, keys, run_ids, report, faults)
        report.seconds = time.monotonic() - started
        audit_runs(client, keys, run_ids, report)
        if cfg.threads:
            audit_threads(client, keys, cfg.threads, run_ids, report)
    finally:
        _count_faults(faults, report)
        pool.stop()
        if faults.model is not None:
            faults.model.stop()
        count_logs(work, report)
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
                    submit_turn(client, keys, tasks[report.submitted], thread_of(report.submitted, cfg.threads),
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
        ready = _killable(pool, ready_pids, cfg.workers) if cfg.kill_workers else []
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


def _killable(pool: _Pool, ready_pids: set[int], per_role: int) -> list[tuple[str, subprocess.Popen[bytes]]]:
    """Ready workers of the roles whose every worker is ready: a role loses one worker at a time and
    its replacement is up before the next kill, as in a rolling update. (Killing whichever worker
    holds the work as soon as it is ready, while the role's other worker still starts, kept a role
    from doing anything on a loaded machine: at load 30 a start-up took longer than two kills.)"""
    ready = [(r, p) for r, p in pool.live() if p.pid in ready_pids]
    full = {role for role, _ in ready if sum(r == role for r, _ in ready) >= per_role}
    return [(r, p) for r, p in ready if r in full]


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
