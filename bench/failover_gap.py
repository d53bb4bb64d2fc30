"""What a client sees during a Sentinel failover: the longest pause between acknowledged writes.

A real Sentinel group (``tests/sentinel/conftest.py``: 1 primary, 1 replica, 3 sentinels,
``down-after-milliseconds`` 1000) and one ``broker.connect`` client writing XADD every 5 ms
from a thread; mid-way the primary is failed over with ``SENTINEL FAILOVER`` or SIGKILLed, and the writer runs
until one write has reached the new primary. Errors that got past the client's retries (a
worker's outage loop absorbs them, ``ride_out_redis``) are counted.

    python -m bench.failover_gap --repeat 3
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from baton.broker import connect
from tests.sentinel.conftest import SentinelGroup


def pause(group: SentinelGroup, action: Callable[[], int]) -> tuple[float, float, int]:
    """``(seconds until the sentinels name the new primary, longest write pause, errors raised)``."""
    client = connect(group.url)
    stop, acked, errors = threading.Event(), [], [0]

    def writer() -> None:
        while not stop.is_set():
            try:
                client.xadd("failover-gap", {"f": "v"})
                acked.append(time.monotonic())
            except Exception:  # noqa: BLE001 - counted: what a caller without its own retry would see
                errors[0] += 1
                time.sleep(0.05)
            time.sleep(0.005)

    thread = threading.Thread(target=writer)
    thread.start()
    time.sleep(1)
    t0 = time.monotonic()
    action()
    promoted = time.monotonic() - t0
    deadline = time.monotonic() + 60
    while not (acked and acked[-1] > t0 + promoted) and time.monotonic() < deadline:
        time.sleep(0.05)  # until a write reached the new primary
    stop.set()
    thread.join()
    client.close()
    return promoted, max(b - a for a, b in zip(acked, acked[1:], strict=False)), errors[0]


def main(argv: list[str] | None = None) -> None:
    """Print one markdown row per trial."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    print("| how | new primary named after (s) | longest pause between acked writes (s) | errors past the retries |")
    print("|---|---|---|---|")
    for how in ("SENTINEL FAILOVER", "primary SIGKILLed"):
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory(prefix="baton-failover-") as tmp:
                group = SentinelGroup(Path(tmp)).start()
                try:
                    promoted, longest, errors = pause(group, group.failover if how == "SENTINEL FAILOVER"
                                                      else group.kill_primary)
                finally:
                    group.stop()
            print(f"| {how} | {promoted:.1f} | {longest:.2f} | {errors} |")


if __name__ == "__main__":
    main()
