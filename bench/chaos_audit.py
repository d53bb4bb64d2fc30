"""What a chaos run (``bench/chaos.py``) counts: its report, and the audit of runs, scratchpads,
results, dead letters and threads it ends with (read through the broker), plus the workers' logs."""

from __future__ import annotations

import statistics
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from baton.agents.workflow.spec import SEED
from baton.broker import Keys
from baton.broker.dlq import list_dead
from baton.broker.runs import run_records
from baton.broker.stats import entries_from, pad_entries
from baton.broker.threads import ThreadInfo, get_thread
from baton.protocol import ProtocolError, Result, RunStatus, decode

__all__ = ["ChaosReport", "audit_runs", "audit_threads", "count_logs", "thread_of", "wait_released"]


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


def audit_runs(client: Any, keys: Keys, run_ids: list[str], report: ChaosReport) -> None:
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


def thread_of(i: int, threads: int) -> str:
    return f"chaos-t{i % threads}"


def audit_threads(client: Any, keys: Keys, threads: int, run_ids: list[str], report: ChaosReport) -> None:
    """Each thread's history holds each of its runs once, in submission order, and the thread is idle."""
    report.threads = threads
    for t in range(threads):
        mine = run_ids[t::threads]
        info = wait_released(client, keys, thread_of(t, threads))
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


def count_logs(work: Path, report: ChaosReport) -> None:
    for path in work.glob("worker-*.log"):
        text = path.read_text(errors="replace")
        report.stale_commits_refused += text.count("was reclaimed by another worker")
        report.duplicate_commits_acked += text.count("had already been handed off")
        report.reclaim_events += text.count("entries from dead consumer") + text.count("entries idle past the")
        report.janitor_trims += text.count("janitor: trimmed {")
