"""A real ``baton serve-model`` process for the model server tests."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from baton.broker import free_port
from tests.conftest import ROOT
from tests.waiting import wait_for


@contextmanager
def serve_model(args: list[str], log: Path, *, env: dict[str, str] | None = None,
                timeout: float = 60) -> Iterator[str]:
    """``baton serve-model --port <free> ARGS`` until healthy; yields its ``/v1`` base URL, then stops it."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "baton", "serve-model", "--port", str(port), *args],
                                env=env, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT)

    def healthy() -> bool:
        assert proc.poll() is None, log.read_text()
        try:
            return httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(healthy, timeout, "the model server", logs=log.read_text, interval=0.2)
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        proc.wait(30)
