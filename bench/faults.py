"""Outage faults for the chaos run: a model server that dies and comes back, Redis out of memory.

Each fault is a small state machine ticked by the chaos loop (``tick(now)`` every 0.1 s); it
counts its episodes and the seconds they lasted.

- :class:`ModelOutages`: ``baton serve-model`` in a child process, SIGKILLed after ``up_s`` of
  service; an outage lasts from the kill until ``/health`` answers again. The replacement is
  started ahead by the last measured start-up, so an outage lasts the drawn ``down_s`` or the
  server's start-up, whichever is longer (started only after ``down_s``, a start-up of 80 s on a
  loaded machine made every outage up to 90 s, which is the machine, not the schedule).
- :class:`RedisOom`: ``CONFIG SET maxmemory`` lowered to just above the memory in use (with
  ``noeviction``, writes are refused with ``OOM``) for ``oom_s``, then raised to unlimited.
"""

from __future__ import annotations

import logging
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from baton.broker import free_port

__all__ = ["SERVED_NAME", "Faults", "ModelOutages", "RedisOom"]

log = logging.getLogger("baton.chaos")

SERVED_NAME = "chaos-model"
"""The model name the chaos model server reports (workers name it, so they skip ``/v1/models``)."""


class ModelOutages:
    """``baton serve-model MODEL`` on a free port, killed and restarted on a random schedule.

    Args:
        model: what ``serve-model`` loads (a model directory, a hub id, or ``echo``).
        log_dir: where the server's log goes.
        env: the server's environment.
        up_s: seconds of service between outages (min, max).
        down_s: seconds the server stays dead before it is started again (min, max).
        rng: the schedule's random source.
        limit: outages in all (None: no end).
    """

    def __init__(self, model: str, log_dir: Path, env: dict[str, str], *, up_s: tuple[float, float],
                 down_s: tuple[float, float], rng: random.Random, limit: int | None = None) -> None:
        self.model = model
        self.log_dir = log_dir
        self.env = env
        self.up_s = up_s
        self.down_s = down_s
        self.rng = rng
        self.limit = limit
        self.port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self.outages = 0
        self.down_seconds = 0.0
        self.longest_s = 0.0
        self._next_kill = float("inf")
        self._killed_at: float | None = None
        self._restart_at: float | None = None
        self._starts = 0
        self._started_at = 0.0
        self.startup_s = 0.0
        """How long the last start took to answer ``/health`` (a restart is started this much early)."""

    @property
    def url(self) -> str:
        """The ``BATON_MODEL`` of HTTP-backed workers."""
        return f"http://127.0.0.1:{self.port}/v1?model={SERVED_NAME}"

    def start(self) -> None:
        """Start the server process (it answers once the model is loaded)."""
        self._starts += 1
        self._started_at = time.monotonic()
        with open(self.log_dir / f"model-server-{self._starts}.log", "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "baton", "serve-model", "--model", self.model, "--port", str(self.port),
                 "--name", SERVED_NAME], env=self.env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def healthy(self) -> bool:
        """Whether the server answers ``/health`` right now."""
        if self.proc is None or self.proc.poll() is not None:
            return False
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=0.5).status_code == 200
        except httpx.HTTPError:
            return False

    def arm(self, now: float) -> None:
        """Begin the outage schedule at ``now``."""
        self._next_kill = now + self.rng.uniform(*self.up_s)

    def wait_healthy(self, timeout_s: float = 180.0) -> None:
        """Block until the server answers (after its first start)."""
        deadline = time.monotonic() + timeout_s
        while not self.healthy():
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"model server exited with {self.proc.returncode}; see {self.log_dir}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"model server not healthy after {timeout_s:.0f}s; see {self.log_dir}")
            time.sleep(0.2)
        self.startup_s = time.monotonic() - self._started_at

    def tick(self, now: float) -> None:
        """Kill, restart, or notice the server is back, as the schedule says."""
        if self._killed_at is None:
            if now >= self._next_kill:
                self._kill()
                self._killed_at = now
                self._restart_at = now + max(0.0, self.rng.uniform(*self.down_s) - self.startup_s)
                self.outages += 1
                log.info("model server killed (outage %d)", self.outages)
            return
        if self._restart_at is not None and now >= self._restart_at:
            self.start()
            self._restart_at = None
        elif self._restart_at is None and self.healthy():
            self.startup_s = now - self._started_at
            self._end(now)

    def settle(self, now: float) -> None:
        """End the run's faults: the server is started if it is down (and the outage counted)."""
        if self._killed_at is not None:
            if self._restart_at is not None:
                self.start()
                self._restart_at = None
            self._end(now)

    def _end(self, now: float) -> None:
        assert self._killed_at is not None
        lasted = now - self._killed_at
        self.down_seconds += lasted
        self.longest_s = max(self.longest_s, lasted)
        log.info("model server back after %.1fs", lasted)
        self._killed_at = None
        done = self.limit is not None and self.outages >= self.limit
        self._next_kill = float("inf") if done else now + self.rng.uniform(*self.up_s)

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        """Stop the server for good."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill()


class RedisOom:
    """Episodes of ``maxmemory`` just above the memory in use (writes refused with OOM), then unlimited.

    Args:
        every_s: seconds between episodes (min, max).
        oom_s: seconds an episode lasts (min, max).
        headroom: bytes above ``used_memory`` left writable when an episode starts.
        rng: the schedule's random source.
    """

    def __init__(self, *, every_s: tuple[float, float], oom_s: tuple[float, float], headroom: int,
                 rng: random.Random) -> None:
        self.every_s = every_s
        self.oom_s = oom_s
        self.headroom = headroom
        self.rng = rng
        self.episodes = 0
        self.seconds = 0.0
        self.longest_s = 0.0
        self._next = float("inf")
        self._began: float | None = None
        self._until = 0.0

    def arm(self, now: float) -> None:
        """Begin the schedule at ``now``."""
        self._next = now + self.rng.uniform(*self.every_s)

    def tick(self, client: Any, now: float) -> None:
        """Lower or raise ``maxmemory`` as the schedule says (a Redis error is retried next tick)."""
        if self._began is None and now >= self._next:
            used = int(client.info("memory")["used_memory"])
            client.config_set("maxmemory", used + self.headroom)
            self._began, self._until = now, now + self.rng.uniform(*self.oom_s)
            self.episodes += 1
            log.info("Redis maxmemory lowered to %d bytes (episode %d)", used + self.headroom, self.episodes)
        elif self._began is not None and now >= self._until:
            self._lift(client, now)

    def settle(self, client: Any, now: float) -> None:
        """End an episode in progress."""
        if self._began is not None:
            self._lift(client, now)

    def _lift(self, client: Any, now: float) -> None:
        assert self._began is not None
        client.config_set("maxmemory", 0)
        lasted = now - self._began
        self.seconds += lasted
        self.longest_s = max(self.longest_s, lasted)
        self._began = None
        self._next = now + self.rng.uniform(*self.every_s)
        log.info("Redis maxmemory unlimited again after %.1fs", lasted)


@dataclass(slots=True)
class Faults:
    """The outage faults of one chaos run (each optional), ticked together."""

    model: ModelOutages | None = None
    oom: RedisOom | None = None

    def arm(self, now: float) -> None:
        """Begin every fault's schedule at ``now`` (once the workers are ready)."""
        if self.model is not None:
            self.model.arm(now)
        if self.oom is not None:
            self.oom.arm(now)

    def tick(self, client: Any, now: float) -> None:
        """Advance every fault's schedule."""
        if self.model is not None:
            self.model.tick(now)
        if self.oom is not None:
            try:
                self.oom.tick(client, now)
            except Exception:  # noqa: BLE001 - Redis may be restarting; next tick
                log.debug("maxmemory change failed; retrying", exc_info=True)

    def settle(self, client: Any, now: float) -> None:
        """End every fault in progress: the model server up, Redis writable."""
        if self.model is not None:
            self.model.settle(now)
        if self.oom is not None:
            try:
                self.oom.settle(client, now)
            except Exception:  # noqa: BLE001 - Redis restarting: a restarted Redis has no maxmemory set
                log.warning("could not raise maxmemory again", exc_info=True)
