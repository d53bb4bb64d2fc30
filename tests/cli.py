"""Running the ``baton`` command line as a separate process, as an operator would."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

__all__ = ["baton"]


def baton(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m baton ARGS...`` in the repository root; its text output and exit code."""
    return subprocess.run([sys.executable, "-m", "baton", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
