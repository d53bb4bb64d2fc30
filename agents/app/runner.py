"""The worker's runner of code roles: each handler's ``Context`` over the worker's gateway, then the
handler (``agents/runtime/stages/handle.py`` calls it; the runtime never imports agents/app).

``baton worker`` makes one ``AppRunner`` per process for the code roles it serves and hands it to
their driver; the app's ``retryable`` exception types are retried like ``baton.Retry``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from typing import Any

from ...broker import connect
from ..runtime.events import EventWriter
from ..settings import Settings
from ..workflow.handlers import resolve_handler
from ..workflow.spec import RoleSpec
from .context import AppServices, Context
from .failures import failure_reason, is_transient
from .handler import run_handler

__all__ = ["AppRunner"]


class AppRunner:
    """Runs code roles' handlers with ``services`` (Redis, keys, the call journal, events)."""

    def __init__(self, services: AppServices, *, retryable: Sequence[type[BaseException]] = (),
                 search: str = "") -> None:
        self.services = services
        self.retryable = tuple(retryable)
        self.search = search
        self._handlers: dict[str, Callable[..., Any]] = {}

    @classmethod
    def for_settings(cls, s: Settings, *, retryable: Sequence[type[BaseException]] = (),
                     search: str = "") -> AppRunner:
        """A runner whose services talk to ``s.redis_url`` (journal retained like the run record,
        off with ``BATON_JOURNAL=0``)."""
        client = connect(s.redis_url, socket_timeout=s.block_ms / 1000 + 10)
        keys = s.keys()
        events = EventWriter(client, keys)
        return cls(AppServices.for_worker(client, keys, journal=s.journal,
                                          events=events), retryable=retryable, search=search)

    async def run(self, gateway: Any, item: Any, spec: RoleSpec) -> object:
        """Run ``spec``'s handler on ``item``'s task; its outcome (``ctx.scratchpad`` goes to the hop's
        scratchpad ``meta`` as ``item.notes``; the context stays on ``item.context``)."""
        handler = self._handlers.get(spec.role)
        if handler is None:
            handler = self._handlers[spec.role] = resolve_handler(spec, search=self.search)
        ctx = Context(gateway, item, spec, self.services)
        with contextlib.suppress(AttributeError):  # a slotted item without the slot: the outcome suffices
            item.context = ctx
        ctx.calls.prefetch()  # the batch's hops read their journals in one round trip
        outcome = await run_handler(handler, ctx, item.task.task)
        if ctx.scratchpad:
            with contextlib.suppress(AttributeError):
                item.notes = dict(ctx.scratchpad)
        return outcome

    def is_transient(self, exc: BaseException) -> bool:
        """``baton.Retry``, model and Redis outages, and the app's retryable types."""
        return is_transient(exc, self.retryable)

    def failure_reason(self, exc: BaseException, role: str) -> str:
        """The exception's type, message and innermost frame."""
        return failure_reason(exc, role)
