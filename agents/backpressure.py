"""Backpressure at the submit paths (client, HTTP API, CLI): which backlog limit applies. The
public errors a refusal becomes are the client's (``baton.refusals``).

The limit of a workflow is its entry role's ``max_backlog`` when the workflow file sets one, else
``BATON_MAX_BACKLOG`` (0: no limit). The check itself, its cache and its Retry-After live in
``baton.broker.backpressure``.
"""

from __future__ import annotations

from baton.agents.settings import Settings
from baton.agents.workflow.spec import Workflow
from baton.broker import Keys, Redis
from baton.broker.backpressure import check_backlog

__all__ = ["backlog_limit", "check_submit"]

def backlog_limit(wf: Workflow, settings: Settings) -> int:
    """The backlog limit of ``wf``'s entry role (0: none)."""
    own = wf.role(wf.entry).max_backlog
    return settings.max_backlog if own is None else own


def check_submit(client: Redis, keys: Keys, settings: Settings, wf: Workflow) -> None:
    """Refuse (``broker.backpressure.BacklogFull``) a new run of ``wf`` while its entry role is at its limit."""
    check_backlog(client, keys, wf.name, wf.entry, backlog_limit(wf, settings))
