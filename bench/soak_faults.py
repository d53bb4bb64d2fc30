"""The soak's faults on top of its steady load: worker SIGKILLs, one Redis restart, one model outage.

- every ``kill_every_s`` a worker is SIGKILLed (rotating over the slots, apart from the SIGTERM
  rotation) and its replacement started at once, as a supervisor would: its batch is reclaimed;
- once, at ``redis_restart_at_s``, Redis is SIGKILLed and started again on its data dir (AOF
  ``everysec``): workers and the submitter reconnect;
- once, at ``model_outage_at_s``, the model server of the fan-out workflow's workers (``baton
  serve-model`` on the echo model, over HTTP; :class:`bench.faults.ModelOutages`) is SIGKILLed and
  started again ``model_outage_s`` later: those workers hold their batches and wait.

Each is counted in the soak's result (``kills``, ``redis_restarts``, ``model_down_s``).
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from baton.broker import EmbeddedRedis
from bench.faults import ModelOutages

__all__ = ["SoakFaults"]

log = logging.getLogger("baton.soak")


class _Pool(Protocol):
    def kill_one(self, index: int) -> str: ...


@dataclass(slots=True)
class SoakFaults:
    """The fault schedule of one soak, relative to its start (seconds)."""

    server: EmbeddedRedis
    kill_every_s: float = 0.0
    redis_restart_at_s: float = 0.0
    model: ModelOutages | None = None
    kills: int = 0
    redis_restarts: int = 0
    _start: float = 0.0
    _next_kill: float = float("inf")

    @classmethod
    def model_outage(cls, log_dir: Path, env: dict[str, str], at_s: float, down_s: float) -> ModelOutages:
        """The echo model server of the fan-out workers, down once at ``at_s`` for ``down_s``."""
        return ModelOutages("echo", log_dir, env, up_s=(at_s, at_s), down_s=(down_s, down_s),
                            rng=random.Random(0), limit=1)

    def arm(self, now: float) -> None:
        """Start the schedule at ``now`` (the first submit)."""
        self._start = now
        self._next_kill = now + self.kill_every_s if self.kill_every_s > 0 else float("inf")
        if self.model is not None:
            self.model.arm(now)

    def tick(self, now: float, pool: _Pool) -> None:
        """Whatever is due: a worker kill, the Redis restart, the model outage's steps."""
        if now >= self._next_kill:
            name = pool.kill_one(self.kills)
            self.kills += 1
            self._next_kill += self.kill_every_s
            log.info("SIGKILLed worker %s (kill %d)", name, self.kills)
        if self.redis_restart_at_s > 0 and not self.redis_restarts and now >= self._start + self.redis_restart_at_s:
            self.server.restart()
            self.redis_restarts += 1
            log.info("Redis SIGKILLed and restarted")
        if self.model is not None:
            self.model.tick(now)

    def settle(self, now: float) -> None:
        """The model server up again if it is down (the outage counted)."""
        if self.model is not None:
            self.model.settle(now)

    @property
    def model_down_s(self) -> float:
        """Seconds the model server was down (from its kill until it answered again)."""
        return self.model.down_seconds if self.model is not None else 0.0

    def stop(self) -> None:
        """Stop the model server."""
        if self.model is not None:
            self.model.stop()
