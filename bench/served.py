"""The ``served`` configuration: the seed chain's three role workers on one batching ``baton serve-model``.

The server loads the twin once (one torch thread, as the in-process workers: more threads on a
shared 2-core machine made a 40-token call ~10x slower, 2.4 s instead of 0.2 s) and batches the
workers' prompt-list requests together (``--max-batch``, ``--batch-wait-ms``); the workers load no
model (``BATON_MODEL=http://...``, torch never imported). Measured like every other baton
configuration (:class:`~bench.clusters.BatonCluster`), plus the server's own resident set.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.clusters import BatonCluster, Measure
from bench.common import ROOT, rss_mib

__all__ = ["measure_served"]


def _start_server(model: str, env: dict[str, str], log_dir: Path,
                  replicas: int) -> tuple[subprocess.Popen[bytes], str]:
    from baton.broker import free_port

    port = free_port()
    with open(log_dir / "serve-model.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "baton", "serve-model", "--model", model, "--port", str(port), "--name", "twin",
             "--replicas", str(replicas)],
            env=env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    deadline = time.monotonic() + 120
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"serve-model exited: {(log_dir / 'serve-model.log').read_text()[-2000:]}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc, f"http://127.0.0.1:{port}/v1?model=twin"
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise TimeoutError("serve-model did not come up")
        time.sleep(0.1)


def measure_served(url: str, model: str, env: dict[str, str], log_dir: Path, runs: int, lat_runs: int,
                   replicas: int = 1) -> Measure:
    """Start serve-model (``replicas`` processes) and one HTTP worker per role, measure, stop;
    ``server_rss_mib`` is the server's (all its processes)."""
    import psutil

    server, model_url = _start_server(model, env, log_dir, replicas)
    m = Measure()
    cluster = BatonCluster(url, {**env, "BATON_MODEL": model_url}, log_dir)
    try:
        cluster.start(m)
        cluster.extra_pids += [server.pid, *(c.pid for c in psutil.Process(server.pid).children(recursive=True))]
        cluster.throughput(m, runs)
        cluster.latency(m, lat_runs)
        m.server_rss_mib.append(rss_mib(server.pid, children=True)[0])
    finally:
        cluster.stop(m)
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return m
