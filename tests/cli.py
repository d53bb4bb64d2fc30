"""Running the ``baton`` command line as a separate process, as an operator would."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT
from tests.zygote import session_zygote

__all__ = ["baton"]


def baton(*args: str, env: dict[str, str], timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """``python -m baton ARGS...`` in the repository root; its text output and exit code (forked from
    the session's preloading zygote, ``tests/zygote.py``, when the environment allows it)."""
    zygote = session_zygote(None)
    if zygote is not None and zygote.accepts(env):
        return zygote.run(list(args), env, ROOT, timeout)
    return subprocess.run([sys.executable, "-m", "baton", *args], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout)
