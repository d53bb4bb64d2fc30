"""Baton: a distributed multi-agent LLM runtime over Redis Streams.

``import baton`` is the public API. The installed package is laid out as:

- ``baton.protocol``: the wire format (msgspec Structs, codecs, limits); no I/O.
- ``baton.broker``: everything that speaks Redis (keys, streams, the atomic handoff, runs).
- ``baton.agents``: the runtime, workflows, model backends, tools, ops views and the CLI.

In the repository these are the top-level folders ``protocol/``, ``broker/`` and ``agents/``;
this module's own folder is ``agents/client/`` (``package-dir`` in ``pyproject.toml``).
Names are imported on first use, so ``import baton.protocol`` stays as light as it is.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from baton.agents.app import (
        App,
        Context,
        Fail,
        FanOut,
        Finish,
        Handoff,
        Next,
        Outcome,
        Retry,
        WaitTimeout,
        load_app,
    )
    from baton.agents.settings import Settings, SettingsError
    from baton.agents.workflow import SEED, Workflow, WorkflowError
    from baton.aio import AsyncClient, AsyncRun
    from baton.broker import PadEntry
    from baton.client import Client, Run, RunInfo
    from baton.errors import (
        BacklogFull,
        BatonError,
        NotReplicated,
        RedisFull,
        RunCancelled,
        RunEnded,
        RunFailed,
        RunNotFound,
        SubmitRefused,
        ThreadBusy,
    )
    from baton.protocol import Budget, DeadLetter, Error, Message, ProtocolError, Result, RunStatus, Task

__all__ = [
    "App",
    "AsyncClient",
    "AsyncRun",
    "BacklogFull",
    "BatonError",
    "Budget",
    "Client",
    "Context",
    "DeadLetter",
    "Error",
    "FanOut",
    "Fail",
    "Finish",
    "Handoff",
    "Message",
    "Next",
    "NotReplicated",
    "Outcome",
    "PadEntry",
    "ProtocolError",
    "RedisFull",
    "Result",
    "Retry",
    "Run",
    "RunCancelled",
    "RunEnded",
    "RunFailed",
    "RunInfo",
    "RunNotFound",
    "RunStatus",
    "SEED",
    "Settings",
    "SettingsError",
    "SubmitRefused",
    "Task",
    "ThreadBusy",
    "WaitTimeout",
    "Workflow",
    "WorkflowError",
    "__version__",
    "load_app",
]

__version__ = "0.1.0"

_HOME = {
    **dict.fromkeys(["App", "Context", "FanOut", "Fail", "Finish", "Handoff", "Next", "Outcome", "Retry", "WaitTimeout",
                     "load_app"], "baton.agents.app"),
    "Client": "baton.client",
    "Run": "baton.client",
    "RunInfo": "baton.client",
    "AsyncClient": "baton.aio",
    "AsyncRun": "baton.aio",
    "BacklogFull": "baton.errors",
    "BatonError": "baton.errors",
    "NotReplicated": "baton.errors",
    "RedisFull": "baton.errors",
    "SubmitRefused": "baton.errors",
    "RunCancelled": "baton.errors",
    "RunEnded": "baton.errors",
    "RunFailed": "baton.errors",
    "RunNotFound": "baton.errors",
    "ThreadBusy": "baton.errors",
    "Settings": "baton.agents.settings",
    "SettingsError": "baton.agents.settings",
    "SEED": "baton.agents.workflow",
    "Workflow": "baton.agents.workflow",
    "WorkflowError": "baton.agents.workflow",
    "PadEntry": "baton.broker",
    "RunStatus": "baton.protocol",
    "Budget": "baton.protocol",
    "DeadLetter": "baton.protocol",
    "Error": "baton.protocol",
    "Message": "baton.protocol",
    "ProtocolError": "baton.protocol",
    "Result": "baton.protocol",
    "Task": "baton.protocol",
}


def __getattr__(name: str) -> Any:
    """Import a public name from its home module on first use."""
    if name not in _HOME:
        raise AttributeError(f"module 'baton' has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name]), name)
    globals()[name] = value
    return value
