"""Workflows registered by the workers of an app, so clients submit to them by name.

Workers of an app (``baton worker --app pkg.module:app``) publish their workflow's spec in Redis
(``broker/workflows.py``) when they start, as Temporal and Hatchet workers register theirs: clients,
the CLI and the HTTP API then submit to it by name without importing the app
(``loader.named(name, client=..., keys=...)``, the one lookup).
"""

from __future__ import annotations

import msgspec

from ...broker import Keys, Redis
from ...broker.workflows import register_workflow, registered_workflow, registered_workflows
from .spec import Workflow, WorkflowError

__all__ = ["decoded", "publish_workflow", "registered", "registered_names"]

_decode = msgspec.json.Decoder(Workflow).decode
_encode = msgspec.json.Encoder().encode


def publish_workflow(client: Redis, keys: Keys, wf: Workflow) -> None:
    """Register ``wf`` under its name (what an app's worker does when it starts)."""
    register_workflow(client, keys, wf.name, _encode(msgspec.structs.replace(wf, base_dir="")))


def registered(client: Redis, keys: Keys, name: str) -> Workflow | None:
    """The workflow registered as ``name`` (None when none is, or its spec no longer decodes)."""
    return decoded(registered_workflow(client, keys, name))


def decoded(raw: bytes | None) -> Workflow | None:
    """A registered spec as a workflow (None when there is none, or it no longer decodes)."""
    if raw is None:
        return None
    try:
        return _decode(raw)
    except (msgspec.DecodeError, WorkflowError):
        return None


def registered_names(client: Redis, keys: Keys) -> list[str]:
    """The names of the registered workflows, sorted."""
    return registered_workflows(client, keys)
