"""A worker process's life: signals and what its heartbeat says about the process.

SIGTERM or SIGINT stops reading and lets the batch in flight finish and commit; past
``BATON_SHUTDOWN_GRACE_S`` (or at a second signal) the process exits at once and the batch stays
pending for another worker.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

from ...broker import BrokerError, Entry, GroupStreams, Heartbeat

__all__ = ["heartbeat", "heartbeat_loop", "install_signal_handlers", "torch_threads"]

log = logging.getLogger("baton.worker")


def torch_threads() -> int | None:
    """Intra-op threads of this process's torch, or None when torch is not loaded (echo, HTTP models)."""
    torch = sys.modules.get("torch")
    return int(torch.get_num_threads()) if torch is not None else None


def _grace_over(grace_s: float) -> None:
    log.warning("in-flight work did not finish within the %.0fs grace period: exiting, it stays pending", grace_s)
    os._exit(1)


def install_signal_handlers(stopping: threading.Event, grace_s: float) -> None:
    """SIGTERM/SIGINT set ``stopping``; past ``grace_s`` seconds, or at a second signal, exit at once."""
    signals = 0

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("second signal: exiting now, in-flight entries stay pending")
            os._exit(1)
        log.info("signal %s: finishing in-flight work, then exiting", signal.Signals(signum).name)
        stopping.set()
        grace = threading.Timer(grace_s, _grace_over, args=(grace_s,))
        grace.daemon = True  # past the grace period, exit like a second signal would
        grace.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def heartbeat(consumer: str, role: str, processed: int, **fields: Any) -> Heartbeat:
    """This process's heartbeat as ``consumer`` of ``role`` (host, pid and time filled in): what every
    worker (a role's, a multi-role one, a tool worker) writes; ``fields`` adds its own figures."""
    return Heartbeat(consumer=consumer, role=role, host=socket.gethostname(), pid=os.getpid(), at=time.time(),
                     processed=processed, **fields)


def heartbeat_loop(stopping: threading.Event, interval_s: float, beat: Callable[[], None],
                   streams: GroupStreams, in_flight: Callable[[], list[Entry]]) -> None:
    """Until ``stopping``: every ``interval_s`` write the heartbeat (``beat``) and renew the leases
    of the entries in flight. A failed beat is logged and tried again at the next interval."""
    while not stopping.wait(interval_s):
        try:
            beat()
            if entries := in_flight():
                streams.touch(entries)
        except BrokerError as exc:
            log.debug("heartbeat failed: %s", exc)
