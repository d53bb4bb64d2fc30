"""Redis commands per hop and per run, measured with ``INFO commandstats`` on a fresh server.

A fresh ``redis-server``, three real worker processes (echo model) of the seed chain
(planner -> researcher -> summarizer: 3 hops per run); ``CONFIG RESETSTAT``; an idle window
(heartbeats and blocking reads only); then N runs, either all submitted at once (``burst``: the
workers read and commit in batches) or one after another (``serial``: each hop alone, the worst
case). Commands run inside Lua scripts are counted as well (commandstats counts them), so
``evalsha`` appears beside the ``xadd``/``hset`` it performs. ``usec`` is Redis' own CPU time per
command, where a script's or a MULTI's time includes the commands it runs (so the column does not
add up); the saturation estimate uses the server's main-thread CPU time instead (``INFO cpu``,
user + sys, network I/O included): 1e6 / CPU-us-per-hop is the hop rate at which the
single-threaded server would be busy all the time.
``redis-benchmark`` (XADD, and an EVAL doing three writes) is printed as the reference.

    python -m bench.redis_cost --runs 300
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import redis

from baton.broker import EmbeddedRedis, Keys, live_workers, submit, wait_for_runs
from baton.protocol import Task

ROLES = ("planner", "researcher", "summarizer")
HOPS_PER_RUN = len(ROLES)
EVAL_3_WRITES = ("redis.call('XADD', KEYS[1], '*', 'f', ARGV[1]) redis.call('HSET', KEYS[1]..':h', 'f', ARGV[1]) "
                 "return redis.call('SET', KEYS[1]..':s', ARGV[1])")

Stats = dict[str, tuple[int, float]]  # command -> (calls, usec)


@contextmanager
def stack(root: Path) -> Iterator[tuple[EmbeddedRedis, redis.Redis]]:
    """A fresh server and one worker process per role, all stopped on exit."""
    server = EmbeddedRedis(root / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({"REDIS_URL": server.url, "BATON_MODEL": "echo", "BATON_CACHE_DIR": str(root / "cache"),
                "HF_HUB_OFFLINE": "1"})
    procs = [subprocess.Popen([sys.executable, "-m", "baton", "worker", role], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for role in ROLES]
    client = redis.Redis.from_url(server.url)
    try:
        deadline = time.monotonic() + 120
        while len(live_workers(client, Keys())) < len(ROLES):
            if time.monotonic() > deadline:
                raise TimeoutError("workers did not start")
            time.sleep(0.1)
        yield server, client
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(30)
        client.close()
        server.stop()


def commandstats(client: redis.Redis) -> Stats:
    """``INFO commandstats`` as ``{command: (calls, usec)}``."""
    info = client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), float(v["usec"])) for k, v in info.items()}


def main_thread_cpu_s(client: redis.Redis) -> float:
    """CPU seconds (user + sys) of the server's main thread so far."""
    cpu = client.info("cpu")
    return float(cpu["used_cpu_user_main_thread"]) + float(cpu["used_cpu_sys_main_thread"])


def measure(client: redis.Redis, runs: int, mode: str, idle_s: float) -> tuple[Stats, Stats, float, float]:
    """Idle stats over ``idle_s``, stats of ``runs`` runs, the seconds they took and the net server CPU s."""
    keys = Keys()
    client.config_resetstat()
    cpu0 = main_thread_cpu_s(client)
    time.sleep(idle_s)
    idle = commandstats(client)
    idle_cpu = main_thread_cpu_s(client) - cpu0
    client.config_resetstat()
    cpu0 = main_thread_cpu_s(client)
    t0 = time.monotonic()
    if mode == "burst":
        ids = [submit(client, keys, Task(run_id=f"{mode}-{i}", role="planner", task=f"task {i}")) for i in range(runs)]
        wait_for_runs(client, keys, ids, timeout=600)
    else:
        for i in range(runs):
            run_id = submit(client, keys, Task(run_id=f"{mode}-{i}", role="planner", task=f"task {i}"))
            wait_for_runs(client, keys, [run_id], timeout=60)
    elapsed = time.monotonic() - t0
    cpu = main_thread_cpu_s(client) - cpu0 - idle_cpu * elapsed / idle_s
    busy = commandstats(client)
    for driver_cmd in ("info", "config|resetstat", "config"):
        busy.pop(driver_cmd, None)
        idle.pop(driver_cmd, None)
    return idle, busy, elapsed, cpu


def table(idle: Stats, busy: Stats, idle_s: float, elapsed: float, runs: int) -> tuple[list[str], float, float]:
    """Rows ``command | per run | per hop | usec per run`` after taking off the idle rate; totals."""
    rows, total_calls, total_usec = [], 0.0, 0.0
    for cmd in sorted(busy, key=lambda c: -busy[c][0]):
        calls, usec = busy[cmd]
        idle_calls, idle_usec = idle.get(cmd, (0, 0.0))
        calls_net = max(0.0, calls - idle_calls * elapsed / idle_s)
        usec_net = max(0.0, usec - idle_usec * elapsed / idle_s)
        if calls_net / runs < 0.01:
            continue
        total_calls += calls_net
        total_usec += usec_net
        rows.append(f"| {cmd} | {calls_net / runs:.2f} | {calls_net / runs / HOPS_PER_RUN:.2f} | "
                    f"{usec_net / runs:.1f} |")
    return rows, total_calls / runs, total_usec / runs


def benchmark(port: int, n: int) -> list[str]:
    """``redis-benchmark`` lines: XADD and EVAL of three writes, 50 clients, no pipelining."""
    out = []
    for label, args in (("XADD", ["XADD", "bench:s", "MAXLEN", "~", "10000", "*", "f", "v" * 100]),
                        ("EVAL (XADD+HSET+SET)", ["EVAL", EVAL_3_WRITES, "1", "bench:e", "v" * 100])):
        proc = subprocess.run(["redis-benchmark", "-p", str(port), "-n", str(n), "-c", "50", "-q", *args],
                              capture_output=True, text=True, timeout=300)
        match = re.search(r"([\d.]+) requests per second", proc.stdout.replace("\r", "\n"))
        out.append(f"| {label} | {float(match.group(1)):,.0f} |" if match else f"| {label} | failed: {proc.stderr} |")
    return out


def main(argv: list[str] | None = None) -> None:
    """Print the tables (markdown) for BENCHMARKS.md / docs/OPERATIONS.md."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--serial-runs", type=int, default=100)
    ap.add_argument("--idle-s", type=float, default=3.0)
    ap.add_argument("--bench-n", type=int, default=100_000)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="baton-redis-cost-") as tmp, stack(Path(tmp)) as (server, client):
        for mode, runs in (("burst", args.runs), ("serial", args.serial_runs)):
            idle, busy, elapsed, cpu_s = measure(client, runs, mode, args.idle_s)
            rows, calls, usec = table(idle, busy, args.idle_s, elapsed, runs)
            idle_rate = sum(c for c, _ in idle.values()) / args.idle_s
            print(f"\n### {mode}: {runs} runs in {elapsed:.1f} s ({runs / elapsed:.0f} runs/s), "
                  f"idle background {idle_rate:.0f} commands/s (3 workers, taken off below)\n")
            print("| command | per run | per hop | usec per run (nested) |\n|---|---|---|---|")
            print("\n".join(rows))
            print(f"| **total** | **{calls:.1f}** | **{calls / HOPS_PER_RUN:.1f}** | **{usec:.0f}** |")
            hop_us = cpu_s * 1e6 / runs / HOPS_PER_RUN
            print(f"\nRedis main-thread CPU per hop {hop_us:.0f} us: one node is saturated near "
                  f"{1e6 / hop_us:,.0f} hops/s ({1e6 / hop_us / HOPS_PER_RUN:,.0f} runs/s).")
        print("\n### redis-benchmark, 50 clients, no pipelining (requests/s)\n\n| command | requests/s |\n|---|---|")
        print("\n".join(benchmark(server.port, args.bench_n)))


if __name__ == "__main__":
    main()
