"""The worker's way into ``agents/app``: ``AppRunner`` builds each handler's ``Context`` and runs it.

The runtime never imports ``agents/app``: the CLI hands a worker an ``AppRunner`` (the runtime's
``HandlerRunner`` protocol) when it serves code roles. One runner per worker process holds the
services every context shares (its own Redis connection, the call journal, the event writer).
"""

from __future__ import annotations

import contextlib
from typing import Any

from baton.agents.app.context import AppServices, Context
from baton.agents.app.failures import failure_reason, is_transient
from baton.agents.app.handler import run_handler
from baton.agents.runtime.events import EventWriter
from baton.agents.settings import Settings
from baton.agents.workflow.handlers import resolve_handler
from baton.agents.workflow.spec import RoleSpec
from baton.broker import Keys, Redis, connect

__all__ = ["AppRunner"]


class AppRunner:
    """Runs code roles' handlers for a worker with ``settings``; ``retryable``: the app's transient types."""

    def __init__(self, settings: Settings, *, retryable: tuple[type[BaseException], ...] = (),
                 client: Redis | None = None) -> None:
        self.settings = settings
        self.retryable = retryable
        self._client = client
        self._services: AppServices | None = None

    @property
    def services(self) -> AppServices:
        """The services the contexts share (connected on first use)."""
        if self._services is None:
            s = self.settings
            client = self._client or connect(s.redis_url)
            keys = Keys(s.prefix, s.partitions)
            events = EventWriter(client, keys, maxlen=s.events_maxlen, ttl_s=s.events_ttl_s)
            self._services = AppServices.for_worker(client, keys, record_ttl_s=s.record_ttl_s, journal=s.journal,
                                                    events=events)
        return self._services

    async def run(self, gateway: Any, item: Any, spec: RoleSpec) -> object:
        """Run ``spec``'s handler on ``item``'s task through ``gateway``; its outcome. The context is
        kept on the item (``item.context``) for the hop's scratchpad ``meta``."""
        ctx = Context(gateway, item, spec, self.services)
        with contextlib.suppress(AttributeError):  # a slotted item without the slot: the outcome suffices
            item.context = ctx
        ctx.calls.prefetch()  # the batch's hops read their journals in one round trip
        return await run_handler(resolve_handler(spec), ctx, item.task.task)

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a handler that raised ``exc`` runs again later (``baton.Retry``, outages, the app's types)."""
        return is_transient(exc, self.retryable)

    def failure_reason(self, exc: BaseException, role: str) -> str:
        """The dead-letter reason: the exception's type, message and innermost frame."""
        return failure_reason(exc, role)
