"""``python -m bench.ratelimit``: the cost and the accuracy of the shared model rate limit.

One embedded ``redis-server`` (never the machine's 6379). Cost: round-trip time of one
reservation (``broker.ratelimit.reserve``) and of one settle, which a limited model call adds.
Accuracy: ``--threads`` limiters of one model, each in a loop of acquire / no-op call / settle
as fast as it can, for ``--seconds``; the granted rate after the initial burst against the limit.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from baton.agents.backends import Generation
from baton.agents.runtime.metrics import WorkerMetrics
from baton.agents.runtime.ratelimits import ModelLimiter
from baton.agents.settings import Settings
from baton.broker import EmbeddedRedis, Keys, connect
from baton.broker.ratelimit import reserve, settle, usage


def _latency(url: str, calls: int) -> tuple[list[float], list[float]]:
    client, keys = connect(url), Keys()
    res, sett = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        grant = reserve(client, keys, "bench-cost", rpm=10**9, tpm=10**9, requests=1, tokens=40)
        t1 = time.perf_counter()
        settle(client, keys, "bench-cost", rpm=10**9, tpm=10**9, unused_tokens=10, minute=grant.minute)
        res.append(t1 - t0)
        sett.append(time.perf_counter() - t1)
    return res, sett


def _accuracy(url: str, threads: int, seconds: float, rpm: int) -> tuple[int, float, int]:
    stop = threading.Event()
    grants: list[float] = []
    lock = threading.Lock()

    def loop() -> None:
        limiter = ModelLimiter(connect(url), Keys(), "bench-rate", rpm=rpm, tpm=0, stopping=stop,
                               metrics=WorkerMetrics("bench"), settings=Settings())
        while not stop.is_set():
            try:
                limiter.call(1, 40, lambda: [Generation(text="", new_tokens=40)])
            except Exception:  # noqa: BLE001 - CallHeld at the end
                return
            with lock:
                grants.append(time.monotonic())

    workers = [threading.Thread(target=loop) for _ in range(threads)]
    for w in workers:
        w.start()
    time.sleep(seconds)
    stop.set()
    for w in workers:
        w.join()
    (model,) = [u for u in usage(connect(url), Keys()) if u.model == "bench-rate"]
    return len(grants), max(grants) - min(grants), model.total_requests


def main() -> None:
    """Measure and print one Markdown block."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--calls", type=int, default=2000)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rpm", type=int, default=1200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = EmbeddedRedis(Path(tmp) / "redis").start()
        try:
            res, sett = _latency(server.url, args.calls)
            granted, span, counted = _accuracy(server.url, args.threads, args.seconds, args.rpm)
        finally:
            server.stop()
    q = lambda xs, p: statistics.quantiles(xs, n=100)[p - 1] * 1e6  # noqa: E731
    burst = args.rpm // 10
    rate = (granted - burst) / span * 60
    print(f"reserve: p50 {q(res, 50):.0f} µs, p99 {q(res, 99):.0f} µs; settle: p50 {q(sett, 50):.0f} µs, "
          f"p99 {q(sett, 99):.0f} µs ({args.calls} calls)")
    print(f"{args.threads} threads against rpm {args.rpm} for {args.seconds:.0f} s: {granted} granted "
          f"(script counted {counted}), {rate:.1f} per minute after the burst of {burst} "
          f"({rate / args.rpm - 1:+.1%} of the limit)")


if __name__ == "__main__":
    main()
