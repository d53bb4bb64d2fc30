"""A run's end: what follows once runs reached a terminal status (``protocol/states.py``).

:func:`runs_ended` is called wherever runs end, after the write that ended them: the worker's
commit stage (a last hop's result, a failure, a cancelled run's halt), ``cancel_run``, and the
expiry of reviews. Each feature that reacts to a run's end adds one line there. Every step must be
idempotent (a run may be reported again, by a redelivery or the janitor), and anything that must
happen even when the process dies right after the ending write needs a sweep of its own
(threads: ``broker.threads.sweep`` in the janitor; tenants' caps: ``broker.tenants.sweep_caps``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .drive import Op, blocking
from .keys import Keys
from .tenants import release_runs_op
from .threads import release_op

__all__ = ["runs_ended", "runs_ended_op"]


def runs_ended_op(keys: Keys, run_ids: Sequence[str], tenants: Mapping[str, str] | None = None) -> Op[None]:
    """React to the end of each of ``run_ids`` (each has a terminal status now; ``tenants``: each
    run's tenant, when the caller knows it)."""
    if not run_ids:
        return
    yield from release_op(keys, run_ids)  # threads: the turn joins the history, the next waiting turn starts
    yield from release_runs_op(keys, run_ids, tenants)  # capped tenants: the next queued run starts


runs_ended = blocking(runs_ended_op)
