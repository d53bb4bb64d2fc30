"""Upkeep: the chores every worker process runs beside its role's work, and ``baton scheduler`` runs alone.

A thread per chore, every ``BATON_UPKEEP_POLL_S`` seconds: fire the schedules' due ticks
(``agents/schedules.py``; each tick starts one run however many processes fire it) and deliver
the completion webhooks that are due (``agents/webhooks.py``; one process at a time holds each
delivery); ``baton scheduler`` also wakes every role's due durable timers (``broker/timers.py``; a
worker wakes its own role's on its reclaim timer). A worker runs each chore unless it is turned off
(``BATON_WORKER_SCHEDULES=0``, ``BATON_WORKER_WEBHOOKS=0``, or no ``BATON_WEBHOOK_SECRET`` to sign
with). A worker that connects as a named Redis user (the least-privilege users
``baton acl`` makes, ``broker/acl.py``) runs none of these chores: its user may touch only its
role's keys, so ``baton scheduler``, run as a user that may, fires and delivers for it. A chore that
Redis still refuses with ``NOPERM`` is logged once and dropped for the life of the process. An
outage is logged in one line, any other error with its traceback, and the chore is tried again at
the next pass.
"""

from __future__ import annotations

import contextvars
import logging
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

from ..broker import Keys, Redis
from ..broker.errors import NoPermission, is_transient
from ..broker.timers import Timers
from .schedules import fire_due
from .settings import Settings
from .webhooks import deliver_due

__all__ = ["Upkeep", "named_user", "worker_upkeep"]

log = logging.getLogger("baton.upkeep")


class Upkeep:
    """The chores of one process, run in order each pass."""

    def __init__(self, redis: Redis, keys: Keys, settings: Settings, stop: threading.Event, *,
                 schedules: bool = True, webhooks: bool = True, timers: bool = False,
                 poll_s: float | None = None) -> None:
        self.stop, self.poll_s = stop, settings.upkeep_poll_s if poll_s is None else poll_s
        self.chores: dict[str, Callable[[], object]] = {}
        if schedules:
            self.chores["schedules"] = lambda: fire_due(redis, keys, settings)
        if webhooks and settings.webhook_secret:
            self.chores["webhooks"] = lambda: deliver_due(redis, keys, settings, stop)
        if timers:
            self.chores["timers"] = Timers(redis, keys).tick

    def run_once(self) -> None:
        """One pass of every chore still on (tests call it to step the upkeep)."""
        for name in list(self.chores):
            self._pass(name)

    def _pass(self, name: str) -> bool:
        """One pass of chore ``name``; False once it is dropped."""
        try:
            self.chores[name]()
        except NoPermission as exc:
            log.warning("upkeep: %s turned off in this process, Redis refused it: %s", name, exc)
            del self.chores[name]
            return False
        except Exception as exc:  # noqa: BLE001 - an outage or a bad item must not end the upkeep
            if is_transient(exc):  # an outage: one line, and the next pass tries again
                log.warning("upkeep: %s pass waits for Redis (%s)", name, exc)
            else:
                log.exception("upkeep: %s pass failed", name)
        return True

    def _loop(self, name: str) -> None:
        while not self.stop.is_set() and self._pass(name):
            self.stop.wait(self.poll_s)

    def start(self) -> list[threading.Thread]:
        """Run each chore in its own daemon thread (a slow webhook receiver delays no schedule)."""
        threads = [threading.Thread(target=contextvars.copy_context().run, args=(self._loop, name),
                                    name=f"upkeep-{name}", daemon=True) for name in self.chores]
        for t in threads:
            t.start()
        return threads

    def run(self) -> None:
        """Run every chore until ``stop`` is set."""
        threads = self.start()
        while not self.stop.wait(0.5):
            pass
        for t in threads:
            t.join(timeout=self.poll_s + 1)


def worker_upkeep(redis: Redis, keys: Keys, settings: Settings, stop: threading.Event) -> Upkeep:
    """A worker process's upkeep, as its settings say (``BATON_WORKER_SCHEDULES``, ``BATON_WORKER_WEBHOOKS``);
    none for a worker under a named (least-privilege) Redis user."""
    shared = not named_user(settings.redis_url)
    return Upkeep(redis, keys, settings, stop, schedules=shared and settings.worker_schedules,
                  webhooks=shared and settings.worker_webhooks)


def named_user(redis_url: str) -> bool:
    """Whether ``redis_url`` logs in as a named Redis user other than ``default``."""
    return (urlsplit(redis_url).username or "default") != "default"
