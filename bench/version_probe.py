"""One code version's echo figures, run by ``bench.versions`` inside that version's tree.

Run as a script with the version's tree (and its installed package) first on ``sys.path`` and as
the working directory: it imports that version's own ``bench.clusters`` and ``EmbeddedRedis``, so
it uses only what every version since the first bench has (``BatonCluster(url, env, log_dir)``,
``start``, ``_submit``, ``_wait``, ``stop``). On its own ``redis-server``: one echo worker per role
of the seed chain (``--set NAME=VALUE``: a setting of the workers), a burst of ``--runs`` runs
submitted at once, then ``--latency-runs`` single runs one at a time. Prints one JSON line: runs/s,
the CPU per run of the workers, the ``redis-server`` and this driver over the burst, and the single
runs' latencies in seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def _cpu(pids: list[int]) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        total += t.user + t.system
    return total


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=1000)
    p.add_argument("--latency-runs", type=int, default=100)
    p.add_argument("--set", action="append", default=[], metavar="NAME=VALUE", help="a setting of the workers")
    args = p.parse_args()
    sys.path.insert(0, os.getcwd())  # this version's bench package, not the caller's
    try:
        from baton.broker import EmbeddedRedis
    except ImportError:  # before the baton namespace
        from broker import EmbeddedRedis  # type: ignore[no-redef,assignment]
    from bench.clusters import BatonCluster, Measure

    work = Path(tempfile.mkdtemp(prefix="baton-version-"))
    server: Any = EmbeddedRedis(work / "redis").start()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({"REDIS_URL": server.url, "BATON_CACHE_DIR": str(work / "cache"), "HF_HUB_OFFLINE": "1",
                "BATON_MODEL": "echo"})
    env.update(item.split("=", 1) for item in args.set)
    try:
        cluster = BatonCluster(server.url, env, work)
        m = Measure()
        cluster.start(m)
        workers, redis_pid = [proc.pid for proc in cluster.procs.procs], [server.proc.pid]
        w0, r0, d0, t0 = _cpu(workers), _cpu(redis_pid), time.process_time(), time.perf_counter()
        ids = {cluster._submit(f"task {i}") for i in range(args.runs)}
        cluster._wait(ids)
        elapsed = time.perf_counter() - t0
        w, r, d = _cpu(workers) - w0, _cpu(redis_pid) - r0, time.process_time() - d0
        latencies = []
        for i in range(args.latency_runs):
            t1 = time.perf_counter()
            cluster._wait({cluster._submit(f"single {i}")})
            latencies.append(time.perf_counter() - t1)
        cluster.stop(m)
    finally:
        server.stop()
    shutil.rmtree(work, ignore_errors=True)  # kept when the probe failed: the workers' logs are there
    print(json.dumps({"runs_per_s": args.runs / elapsed, "workers_cpu_s": w / args.runs, "redis_cpu_s": r / args.runs,
                      "driver_cpu_s": d / args.runs, "latencies": latencies}))


if __name__ == "__main__":
    main()
