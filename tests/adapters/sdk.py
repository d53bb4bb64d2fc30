"""Import the OpenAI Agents SDK as ``agents`` in a test process that runs from the repository root.

The repository's own ``agents/`` folder (installed as ``baton.agents``) sits on ``sys.path`` when
pytest runs from the root, and would shadow the SDK's top-level ``agents`` package; installed
baton lives only under ``baton`` (tests/packaging proves it). This imports the SDK once with the
root left out of the path, so every later ``import agents`` gets it."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

from tests.conftest import ROOT


def openai_agents() -> ModuleType:
    loaded = sys.modules.get("agents")
    if loaded is not None and hasattr(loaded, "Agent"):
        return loaded
    sys.modules.pop("agents", None)
    saved = sys.path[:]
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]
    try:
        return importlib.import_module("agents")
    finally:
        sys.path[:] = saved
