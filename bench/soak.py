"""Soak: a steady mixed load for a long time, sampled every 10 s, judged on growth.

``python -m bench.soak --minutes 30`` (``make soak``) starts a private ``redis-server``, two
worker processes per role for the seed chain (the twin model) and for ``research_fanout`` (the
echo model), submits runs at a constant rate well under capacity (alternating workflows), and
SIGTERMs one worker every ``--restart-every`` seconds (rotating over the roles), starting its
replacement at once. On top (``bench.soak_faults``): a worker SIGKILLed every ``--kill-every``
seconds (replaced at once), Redis SIGKILLed and restarted once (``--redis-restart-at``, a share of
the minutes), and the fan-out workers' model (an HTTP ``baton serve-model`` on echo) down once for
``--model-outage`` seconds (at ``--model-outage-at``); 0 turns each off. Every ``--sample-every``
seconds it records worker RSS (each slot and the
total), worker CPU share, Redis ``used_memory`` and key counts by kind, stream lengths (task
streams, results, dead letters, event logs), pending entries, p50/p99 latency of the runs that
finished in the window, runs submitted, done, failed, and the machine's load average (so a
reader can tell the machine from the program). Retention is short
(``--retention``: run records, results and event logs) so a steady state is reached early.

After the last submit it waits ``--drain`` seconds for every run to end; a run that never reached
a terminal status (or whose record vanished first) is lost. The verdict (``bench.soak_report``):
nothing grows over the judged window, p99 stays within 2x of its first-minutes value, 0 lost.
Exit code 1 on failure. Samples go to ``--out`` (JSON), the plot to ``--plot`` (PNG).
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from baton.agents.settings import Settings
from baton.agents.workflow.loader import load
from baton.broker import BrokerError, EmbeddedRedis, Keys, connect, live_workers, run_records
from baton.broker.dlq import count_dead
from baton.broker.stats import discover_streams, key_census, stream_stats
from bench.common import percentile
from bench.soak_faults import SoakFaults
from bench.soak_workers import FANOUT, Meter, WorkerPool, start_pool

__all__ = ["SoakConfig", "Sample", "main", "run_soak"]

log = logging.getLogger("baton.soak")


@dataclass(slots=True)
class SoakConfig:
    """What to run, for how long, and how hard."""

    minutes: float = 30.0
    rate: float = 2.0  # runs per second, both workflows together
    workers: int = 2
    restart_every_s: float = 150.0
    sample_every_s: float = 10.0
    retention_s: int = 120
    janitor_interval_s: float = 10.0
    drain_s: float = 180.0
    workdir: Path | None = None
    kill_every_s: float = 120.0
    redis_restart_at: float = 0.5
    model_outage_at: float = 0.3
    model_outage_s: float = 20.0


@dataclass(slots=True)
class Sample:
    """One 10-second sample."""

    t: float
    rss_mib: dict[str, float]
    rss_total_mib: float
    cpu_share: float
    used_memory_mib: float
    keys: int
    key_kinds: dict[str, int]
    task_len: int
    results_len: int
    dead_len: int
    events_len: int
    event_logs: int
    pending: int
    submitted: int
    done: int
    failed: int
    finished_in_window: int
    p50_s: float
    p99_s: float
    loadavg: float


@dataclass(slots=True)
class _Run:
    submitted_at: float
    status: str = ""
    latency_s: float = 0.0
    finished_wall: float = 0.0


def _settings_env(cfg: SoakConfig, url: str) -> dict[str, str]:
    ret = str(cfg.retention_s)
    return {"REDIS_URL": url, "BATON_RECORD_TTL_S": ret, "BATON_RESULTS_RETENTION_S": ret,
            "BATON_EVENTS_TTL_S": ret, "BATON_EVENTS_MAXLEN": "64",
            "BATON_JANITOR_INTERVAL_S": str(cfg.janitor_interval_s), "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def _poll_runs(client: Any, keys: Keys, runs: dict[str, _Run], open_ids: set[str]) -> None:
    """Note the runs that reached a terminal status since the last poll."""
    ids = list(open_ids)
    for rec in run_records(client, keys, ids):
        if rec is not None and rec.ended:
            run = runs[rec.run_id]
            run.status = str(rec.status)
            end = rec.finished_at or rec.updated_at or time.time()
            # a record that expired mid-run (a hop waited past the retention) is written again by the
            # run's last commit without ``created_at``: the submit time stands in
            run.latency_s = end - (rec.created_at or run.submitted_at)
            run.finished_wall = end
            open_ids.discard(rec.run_id)


def _sample(t: float, client: Any, keys: Keys, pool: WorkerPool, meter: Meter, runs: dict[str, _Run],
            since: float, dt: float) -> Sample:
    pids = pool.pids()
    rss = meter.rss(pids)
    cpu = meter.cpu_delta([*pids.values(), *(p.pid for p in pool.stopping)])
    info = client.info("memory")
    census = key_census(client, keys)
    stats = stream_stats(client, keys, discover_streams(client, keys))
    window = [r.latency_s for r in runs.values() if r.status and since <= r.finished_wall]
    statuses = Counter(r.status for r in runs.values())
    return Sample(
        t=t, rss_mib=rss, rss_total_mib=sum(rss.values()), cpu_share=cpu / (dt * (os.cpu_count() or 1)),
        used_memory_mib=int(info["used_memory"]) / 2**20, keys=int(client.dbsize()), key_kinds=census.kinds,
        task_len=sum(s.length for s in stats),
        results_len=sum(client.xlen(keys.results(p)) for p in range(keys.partitions)),
        dead_len=count_dead(client, keys), events_len=census.events_len,
        event_logs=census.event_logs, pending=sum(g.pending for s in stats for g in s.groups),
        submitted=len(runs), done=statuses["done"], failed=statuses["failed"] + statuses["cancelled"],
        finished_in_window=len(window), p50_s=percentile(window, 50), p99_s=percentile(window, 99),
        loadavg=os.getloadavg()[0],
    )


def _wait_ready(client: Any, keys: Keys, pool: WorkerPool, timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    want = len(pool.slots)
    while time.monotonic() < deadline:
        pool.reap()
        if len(live_workers(client, keys)) >= want:
            return
        time.sleep(0.5)
    raise RuntimeError(f"workers not ready after {timeout:.0f}s")


def run_soak(cfg: SoakConfig, on_sample: Any = None) -> dict[str, Any]:
    """Run the soak described by ``cfg``; return its samples, runs and counts (see ``bench.soak_report``)."""
    work = Path(cfg.workdir or tempfile.mkdtemp(prefix="baton-soak-"))
    server = EmbeddedRedis(work / "redis").start()
    keys = Keys()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BATON_")}, **_settings_env(cfg, server.url)}
    settings = Settings.from_env(env)
    fanout = load(FANOUT)
    client = connect(server.url, retries=10)
    faults = SoakFaults(server, kill_every_s=cfg.kill_every_s,
                        redis_restart_at_s=cfg.redis_restart_at * cfg.minutes * 60)
    if cfg.model_outage_at > 0 and cfg.model_outage_s > 0:
        faults.model = SoakFaults.model_outage(work, env, cfg.model_outage_at * cfg.minutes * 60, cfg.model_outage_s)
        faults.model.start()
        faults.model.wait_healthy()
    pool = start_pool(cfg.workers, work, env, fanout, faults.model.url if faults.model else "echo")
    meter = Meter()
    runs: dict[str, _Run] = {}
    open_ids: set[str] = set()
    samples: list[Sample] = []
    try:
        from baton import Client

        _wait_ready(client, keys, pool)
        submitter = Client(server.url, settings=settings)
        start = time.time()
        end = start + cfg.minutes * 60
        next_sample = start + cfg.sample_every_s
        next_restart = start + cfg.restart_every_s
        rotation = 0
        last_sample = start
        meter.cpu_delta(list(pool.pids().values()))
        faults.arm(start)
        while True:
            now = time.time()
            if now < end:
                faults.tick(now, pool)
                due = int((now - start) * cfg.rate) + 1
                while len(runs) < due:
                    wf = str(FANOUT) if len(runs) % 2 else None
                    run = submitter.submit(f"Explain topic {len(runs)} of supervised learning.", workflow=wf)
                    runs[run.id] = _Run(time.time())
                    open_ids.add(run.id)
                if now >= next_restart:
                    slot = pool.slots[(rotation % (len(pool.slots) // cfg.workers)) * cfg.workers
                                      + (rotation // (len(pool.slots) // cfg.workers)) % cfg.workers]
                    log.info("restarting %s", slot.name)
                    pool.restart(slot)
                    rotation += 1
                    next_restart += cfg.restart_every_s
            elif not open_ids or now > end + cfg.drain_s:
                break
            else:
                faults.settle(now)
            pool.reap()
            try:
                _poll_runs(client, keys, runs, open_ids)
                if now >= next_sample and now < end:
                    s = _sample(now - start, client, keys, pool, meter, runs, last_sample, now - last_sample)
                    samples.append(s)
                    last_sample = now
                    if on_sample:
                        on_sample(s)
            except BrokerError as exc:  # Redis restarting: that sample is skipped, the next one taken
                log.warning("no sample at t=%.0fs: %s", now - start, exc)
            if now >= next_sample:
                next_sample += cfg.sample_every_s
            time.sleep(0.2)
        _poll_runs(client, keys, runs, open_ids)
        submitter.close()
        return {"config": {k: str(v) for k, v in asdict(cfg).items()}, "samples": [asdict(s) for s in samples],
                "latencies": [[r.finished_wall - start, r.latency_s] for r in runs.values() if r.status],
                "submitted": len(runs), "done": sum(r.status == "done" for r in runs.values()),
                "failed": sum(r.status in ("failed", "cancelled") for r in runs.values()),
                "lost": len(open_ids), "lost_runs": sorted(open_ids)[:20], "restarts": pool.restarts,
                "crashes": pool.crashes, "kills": faults.kills, "redis_restarts": faults.redis_restarts,
                "model_down_s": round(faults.model_down_s, 1), "workdir": str(work)}
    finally:
        pool.stop()
        faults.stop()
        client.close()
        server.stop()


app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
def cli(
    minutes: Annotated[float, typer.Option(help="How long to submit runs.")] = 30.0,
    rate: Annotated[float, typer.Option(help="Runs per second (seed and fan-out alternate).")] = 2.0,
    restart_every: Annotated[float, typer.Option(help="Seconds between worker restarts (SIGTERM).")] = 150.0,
    retention: Annotated[int, typer.Option(help="Seconds runs, results and event logs are kept.")] = 120,
    drain: Annotated[float, typer.Option(help="Seconds to wait after the last submit.")] = 180.0,
    kill_every: Annotated[float, typer.Option(help="Seconds between worker SIGKILLs (0: none).")] = 120.0,
    redis_restart_at: Annotated[float, typer.Option(
        help="When to SIGKILL and restart Redis once, as a share of the minutes (0: never).")] = 0.5,
    model_outage_at: Annotated[float, typer.Option(
        help="When the fan-out workers' model server goes down once, as a share of the minutes (0: never).")] = 0.3,
    model_outage: Annotated[float, typer.Option(help="Seconds the model server stays down.")] = 20.0,
    out: Annotated[Path, typer.Option(help="Samples and verdict as JSON.")] = Path("docs/soak.json"),
    plot: Annotated[Path | None, typer.Option(help="PNG plot of the samples.")] = Path("docs/soak.png"),
) -> None:
    """Run the soak, print the table, write the samples and the plot; exit 1 unless it passes."""
    from rich.console import Console

    from bench.soak_report import judge, plot_samples, print_report

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = SoakConfig(minutes=minutes, rate=rate, restart_every_s=restart_every, retention_s=retention, drain_s=drain,
                     kill_every_s=kill_every, redis_restart_at=redis_restart_at, model_outage_at=model_outage_at,
                     model_outage_s=model_outage)

    def progress(s: Sample) -> None:
        log.info("t=%4.0fs rss=%.0fMiB redis=%.1fMiB keys=%d task=%d results=%d events=%d dead=%d pending=%d "
                 "p50=%.2fs p99=%.2fs done=%d/%d cpu=%.0f%% load=%.1f", s.t, s.rss_total_mib, s.used_memory_mib,
                 s.keys, s.task_len, s.results_len, s.events_len, s.dead_len, s.pending, s.p50_s, s.p99_s, s.done,
                 s.submitted, 100 * s.cpu_share, s.loadavg)

    data = run_soak(cfg, progress)
    data["verdict"] = judge(data)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1))
    if plot is not None:
        plot_samples(data, plot)
    print_report(data, Console())
    if not data["verdict"]["ok"]:
        raise typer.Exit(1)


def main() -> None:
    """Entry point of ``python -m bench.soak``."""
    app()


if __name__ == "__main__":
    main()
