"""What the backlog check costs a submit.

``python -m bench.backpressure --submits 2000 --repeats 5`` starts its own redis-server and times
``Client.submit`` (no workers: the backlog only grows) in three modes, interleaved in every repeat:
``off`` (``BATON_MAX_BACKLOG=0``, nothing read), ``cached`` (a limit never reached: the backlog
is read at most once per ``BACKLOG_CACHE_S``) and ``uncached`` (the cache turned off: one
``XINFO GROUPS`` round trip per submit). Prints the median microseconds per submit of each mode.
Not a test: a measurement.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path
from typing import Annotated

import typer

from baton import Client, Settings
from baton.broker import EmbeddedRedis, connect
from baton.broker import backpressure as bp

MODES = ("off", "cached", "uncached")


def _time_submits(url: str, mode: str, submits: int) -> float:
    """Microseconds per submit of ``submits`` submits in ``mode`` (on a flushed Redis)."""
    connect(url).flushall()
    bp.BACKLOG_CACHE_S = 0.0 if mode == "uncached" else 1.0
    limit = 0 if mode == "off" else 10 * submits
    with Client(settings=Settings.from_env({}, redis_url=url, max_backlog=limit)) as c:
        c.submit("warm-up")
        start = time.perf_counter()
        for i in range(submits):
            c.submit(f"task {i}")
        return (time.perf_counter() - start) / submits * 1e6


def main(submits: Annotated[int, typer.Option(help="Submits per mode and repeat.")] = 2000,
         repeats: Annotated[int, typer.Option(help="Repeats (modes interleaved).")] = 5) -> None:
    with tempfile.TemporaryDirectory(prefix="bench-bp-") as tmp, EmbeddedRedis(Path(tmp)) as server:
        times: dict[str, list[float]] = {m: [] for m in MODES}
        for _ in range(repeats):
            for mode in MODES:
                times[mode].append(_time_submits(server.url, mode, submits))
    for mode in MODES:
        print(f"{mode:9s} median {statistics.median(times[mode]):7.1f} us/submit "
              f"(min {min(times[mode]):.1f}, max {max(times[mode]):.1f})")


if __name__ == "__main__":
    typer.run(main)
