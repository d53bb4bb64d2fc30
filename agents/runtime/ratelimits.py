"""Worker side of the shared rate limits: wait for a model's budget before each model call.

A *request* is one prompt sent to the model: a batched call of 8 prompts is 8 requests. Its
tokens are reserved at ``max_new_tokens`` per prompt before the call and settled with the real
count afterwards (the unused part is given back). The limits are per model endpoint and shared
by every worker of every role calling it, on any host (``broker/ratelimit.py``): the settings
``BATON_MODEL_RPM`` / ``BATON_MODEL_TPM``, or a role's ``rpm`` / ``tpm`` in the workflow file.

A worker over the limit waits with its batch (the heartbeat keeps the lease alive, and the wait
is marked, ``waits``, so a kill then uses no delivery attempt); it does not fail the task. A stop
request ends the wait at once with ``outages.CallHeld``: the batch is left pending for another worker.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, TypeVar

from ...broker import BrokerError, Keys, Redis
from ...broker.ratelimit import reserve, settle
from ..settings import Settings
from ..workflow.spec import RoleSpec
from .metrics import WorkerMetrics
from .outages import CallHeld, ride_out_redis
from .waits import running, waiting

__all__ = ["ModelLimiter", "Reservation"]

log = logging.getLogger("baton.worker")

_MAX_SLEEP_S = 1.0
"""The longest single sleep between two asks: another worker's give-back can free budget early."""


class _Counted(Protocol):
    @property
    def new_tokens(self) -> int: ...


G = TypeVar("G", bound=_Counted)
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Reservation:
    """Requests and tokens reserved for one model call (``minute``: when, in Redis time)."""

    requests: int = 0
    tokens: int = 0
    minute: int = 0
    waited_s: float = 0.0


class ModelLimiter:
    """One role's view of its model's shared limits; a no-op when both limits are 0."""

    def __init__(self, client: Redis, keys: Keys, model: str, *, rpm: int, tpm: int, stopping: threading.Event,
                 metrics: WorkerMetrics, settings: Settings) -> None:
        self.client = client
        self.keys = keys
        self.model = model
        self.rpm = max(0, rpm)
        self.tpm = max(0, tpm)
        self.stopping = stopping
        self.metrics = metrics
        self.settings = settings

    @classmethod
    def for_role(cls, client: Redis, keys: Keys, spec: RoleSpec, settings: Settings, *, stopping: threading.Event,
                 metrics: WorkerMetrics) -> ModelLimiter:
        """The limiter of ``spec``'s model: the role's ``rpm``/``tpm`` when set, else the settings'."""
        return cls(client, keys, spec.model or settings.model, rpm=spec.rpm or settings.model_rpm,
                   tpm=spec.tpm or settings.model_tpm, stopping=stopping, metrics=metrics, settings=settings)

    @property
    def enabled(self) -> bool:
        """Whether any limit applies."""
        return bool(self.rpm or self.tpm)

    def acquire(self, prompts: int, max_new: int) -> Reservation:
        """Wait until ``prompts`` requests and ``prompts * max_new`` tokens are reserved.

        ``CallHeld`` when the worker is told to stop first (nothing is reserved).
        """
        if not self.enabled or prompts <= 0:
            return Reservation()
        tokens = prompts * max_new
        began = time.monotonic()
        logged = False
        while True:
            if self.stopping.is_set():
                self.metrics.ratelimit_waited(time.monotonic() - began)
                raise CallHeld(f"stopped while waiting for the rate limit of {self.model}")
            grant = self._redis(lambda: reserve(self.client, self.keys, self.model, rpm=self.rpm, tpm=self.tpm,
                                                requests=prompts, tokens=tokens))
            if grant.granted:
                waited = time.monotonic() - began
                self.metrics.ratelimit_waited(waited)
                running()
                return Reservation(prompts, tokens, grant.minute, waited)
            if not logged:
                log.info("model %s is at its rate limit (rpm %d, tpm %d); waiting %d ms", self.model, self.rpm,
                         self.tpm, grant.wait_ms)
                logged = True
            waiting()
            self.stopping.wait(min(grant.wait_ms / 1000, _MAX_SLEEP_S))

    def settle(self, reservation: Reservation, tokens_used: int) -> None:
        """Give back the reserved tokens the call did not use (they are counted even without a
        token limit, so the monitor shows the model's token rate). A give-back Redis refuses is
        logged and dropped: the call's result matters more than returning budget early."""
        unused = reservation.tokens - tokens_used
        if reservation.requests == 0 or unused <= 0:
            return
        try:
            self._redis(lambda: settle(self.client, self.keys, self.model, rpm=self.rpm, tpm=self.tpm,
                                       unused_tokens=unused, minute=reservation.minute))
        except BrokerError as exc:
            log.warning("could not give back %d unused tokens of %s: %s", unused, self.model, exc)

    def call(self, prompts: int, max_new: int, model_call: Callable[[], Sequence[G]]) -> list[G]:
        """Acquire, run ``model_call``, settle with the tokens it generated (none if it raised)."""
        reservation = self.acquire(prompts, max_new)
        used = 0
        try:
            out = list(model_call())
            used = sum(g.new_tokens for g in out)
            return out
        finally:
            self.settle(reservation, used)

    def _redis(self, step: Callable[[], T]) -> T:
        return ride_out_redis(step, budget_s=self.settings.outage_budget_s, base_s=self.settings.retry_backoff_s,
                              stopping=self.stopping, metrics=self.metrics, what="a rate-limit check")
