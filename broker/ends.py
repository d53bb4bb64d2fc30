"""A run's end: what follows once runs reached a terminal status (``protocol/states.py``).

:func:`runs_ended` is called wherever runs end, after the write that ended them: the worker's
commit stage (a last hop's result, a failure, a cancelled run's halt), ``cancel_run``, and the
expiry of reviews. Each feature that reacts to a run's end adds one line there. Every step must be
idempotent (a run may be reported again, by a redelivery or the janitor), and anything that must
happen even when the process dies right after the ending write needs a sweep of its own
(threads: ``broker.threads.sweep`` in the janitor).
"""

from __future__ import annotations

from collections.abc import Sequence

import redis

from baton.broker.keys import Keys
from baton.broker.threads import release

__all__ = ["runs_ended"]


def runs_ended(client: redis.Redis, keys: Keys, run_ids: Sequence[str]) -> None:
    """React to the end of each of ``run_ids`` (each has a terminal status now)."""
    if not run_ids:
        return
    release(client, keys, run_ids)  # threads: the turn joins the history, the next waiting turn starts
