"""SSE latency: how long a token chunk takes from the worker's write to an HTTP client.

``python -m bench.sse --runs 20`` starts its own redis-server, one twin worker per role of the
seed chain and ``baton dashboard`` (the HTTP API, with a token), submits runs one at a time over
``POST /v1/runs`` and reads each run's ``GET /v1/runs/{id}/events`` stream; for every
``tokens`` event written while the stream was open it takes the arrival time minus the event's
``at`` (set when the worker wrote it; one machine, one clock). Prints p50/p90/p99/max in
milliseconds. Not a test: a measurement.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer

from baton.broker import EmbeddedRedis, Keys, connect, free_port, live_workers
from baton.protocol import TERMINAL_STATUSES
from bench.common import ROOT, percentile, task_text

TOKEN = "bench-token"


def _wait_http(url: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not come up")


def _latencies(url: str, run_id: str) -> list[float]:
    out: list[float] = []
    headers = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.stream("GET", f"{url}/v1/runs/{run_id}/events", headers=headers, timeout=120) as resp:
        connected, kind = time.time(), ""
        for line in resp.iter_lines():
            if line.startswith("event:"):
                kind = line.split(":", 1)[1].strip()
            elif line.startswith("data:") and kind == "tokens":
                at = float(json.loads(line.split(":", 1)[1])["at"])
                if at >= connected:  # written while we listened: live, not read back from the log
                    out.append(time.time() - at)
            elif line.startswith("data:") and kind in TERMINAL_STATUSES:
                break
    return out


def main(runs: Annotated[int, typer.Option(help="Runs to follow, one at a time.")] = 20) -> None:
    """Measure token-to-client latency through the SSE route."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedRedis(Path(tmp) / "redis") as redis_server:
        port = free_port()
        env = {**os.environ, "REDIS_URL": redis_server.url, "BATON_API_TOKENS": TOKEN, "HF_HUB_OFFLINE": "1"}
        procs = [subprocess.Popen([sys.executable, "-m", "baton", "worker", role], env=env, cwd=ROOT,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for role in ("planner", "researcher", "summarizer")]
        procs.append(subprocess.Popen([sys.executable, "-m", "baton", "dashboard", "--port", str(port)], env=env,
                                      cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_http(url)
            client = connect(redis_server.url)
            while len(live_workers(client, Keys())) < 3:
                time.sleep(0.2)
            samples: list[float] = []
            for i in range(runs):
                resp = httpx.post(f"{url}/v1/runs", json={"task": task_text(i)},
                                  headers={"Authorization": f"Bearer {TOKEN}"})
                samples += _latencies(url, resp.json()["run_id"])
            ms = sorted(s * 1000 for s in samples)
            print(f"token events: {len(ms)} over {runs} runs; latency worker write -> SSE client: "
                  f"p50 {percentile(ms, 50):.1f} ms, p90 {percentile(ms, 90):.1f} ms, "
                  f"p99 {percentile(ms, 99):.1f} ms, max {ms[-1]:.1f} ms")
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=30)


if __name__ == "__main__":
    typer.run(main)
