"""Backpressure at the submit paths (client, HTTP API, CLI): which backlog limit applies. The
public errors a refusal becomes are the client's (``baton.refusals``).

The limit of a workflow is its entry role's ``max_backlog`` when the workflow file sets one, else
``BATON_MAX_BACKLOG`` (0: no limit). The check itself, its cache and its Retry-After live in
``baton.broker.backpressure``.
"""

from __future__ import annotations

from ..broker import Keys
from ..broker.backpressure import check_backlog_op
from ..broker.drive import Op, blocking
from .settings import Settings
from .workflow.spec import Workflow

__all__ = ["backlog_limit", "check_submit", "check_submit_op"]

def backlog_limit(wf: Workflow, settings: Settings) -> int:
    """The backlog limit of ``wf``'s entry role (0: none)."""
    own = wf.role(wf.entry).max_backlog
    return settings.max_backlog if own is None else own


def check_submit_op(keys: Keys, settings: Settings, wf: Workflow) -> Op[None]:
    """Refuse (``broker.backpressure.BacklogFull``) a new run of ``wf`` while its entry role is at its limit."""
    yield from check_backlog_op(keys, wf.name, wf.entry, backlog_limit(wf, settings))


check_submit = blocking(check_submit_op)
