"""In-process workers of any workflow, on the real twin model and the test Redis.

``Inline`` runs ``baton.agents.runtime.worker.Worker`` objects in the test process (one model load per
session) and drives them until every stream is drained: the same code path as a worker
process, without the start-up cost. Multi-process behaviour is tested with the ``workers``
fixture instead.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from baton.agents.runtime.worker import Worker
from baton.agents.settings import Settings
from baton.agents.workflow.spec import Workflow


class Inline:
    """Workers of one workflow living in the test process."""

    def __init__(self, redis_url: str, backend: Any, client: redis.Redis) -> None:
        self.settings = Settings(redis_url=redis_url, block_ms=50, max_new_tokens=12, janitor_interval_s=3600)
        self.backend = backend
        self.client = client
        self.workers: list[Worker] = []

    def start(self, wf: Workflow, *roles: str, **overrides: Any) -> list[Worker]:
        """Create workers for ``roles`` (all of the workflow's when none are given)."""
        s = Settings(**{**{f: getattr(self.settings, f) for f in self.settings.__struct_fields__}, **overrides})
        made = []
        for role in roles or [r.role for r in wf.roles]:
            w = Worker(s, wf, role, backend=self.backend, client=self.client)
            w.load()
            w.streams.ensure_groups()
            made.append(w)
        self.workers += made
        return made

    def drain(self, timeout: float = 60) -> int:
        """Let every worker read and process until a full round finds nothing; return entries handled."""
        handled, deadline = 0, time.monotonic() + timeout
        while time.monotonic() < deadline:
            round_ = 0
            for w in self.workers:
                for pending in (True, False):
                    entries = w.streams.read(pending=pending, count=w.settings.batch_size, block_ms=None)
                    if entries:
                        w.process(entries)
                        round_ += len(entries)
            handled += round_
            if round_ == 0:
                return handled
        raise TimeoutError("workers kept finding work")

    def close(self) -> None:
        """Release tool threads."""
        for w in self.workers:
            w.steps.close()


@pytest.fixture
def inline(redis_url: str, twin_backend: Any, client: redis.Redis) -> Iterator[Inline]:
    """In-process workers on the test Redis and the twin."""
    i = Inline(redis_url, twin_backend, client)
    yield i
    i.close()
