"""Workflows registered by name: what the workers of an app publish so clients can submit by name.

A workflow written as a TOML file can be named by its path; a workflow written in Python (an
``App``) lives in the app's module, which clients and the API server need not import. As with
Temporal's or Hatchet's workers, a worker of an app registers its workflow's spec (JSON, handlers
as ``module:function`` references) in the hash ``Keys.workflows()`` when it starts; submitting to
that name then works from any client. The broker stores bytes: decoding is the caller's (typed).
"""

from __future__ import annotations

from typing import Any

import redis

from .drive import Op, blocking
from .keys import Keys
from .text import as_text

__all__ = ["register_workflow", "registered_workflow", "registered_workflow_op", "registered_workflows",
           "registered_workflows_op"]


def register_workflow(client: redis.Redis, keys: Keys, name: str, spec: bytes) -> None:
    """Publish (or replace) workflow ``name``'s ``spec``."""
    client.hset(keys.workflows(), name, spec)


def registered_workflow_op(keys: Keys, name: str) -> Op[bytes | None]:
    """The spec registered as ``name``, or None."""
    raw: Any = yield lambda c: c.hget(keys.workflows(), name)
    return bytes(raw) if raw is not None else None


def registered_workflows_op(keys: Keys) -> Op[list[str]]:
    """The names of every registered workflow, sorted."""
    raw: Any = yield lambda c: c.hkeys(keys.workflows())
    return sorted(as_text(n) for n in raw)


registered_workflow = blocking(registered_workflow_op)
registered_workflows = blocking(registered_workflows_op)
