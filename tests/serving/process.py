"""A real ``baton serve-model`` process for the model server tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from baton.broker import free_port
from tests.conftest import ROOT
from tests.waiting import wait_for
from tests.zygote import session_zygote


@contextmanager
def serve_model(args: list[str], log: Path, *, env: dict[str, str] | None = None,
                timeout: float = 60) -> Iterator[str]:
    """``baton serve-model --port <free> [--replicas 1] ARGS`` until healthy; yields its ``/v1`` base URL,
    then stops it."""
    port = free_port()
    # one server process unless a test asks for more (the default is one per core): it is forked
    # from the zygote below, and a test that reads /health reads the one batcher there is
    replicas = [] if "--replicas" in args else ["--replicas", "1"]
    argv = ["serve-model", "--port", str(port), *replicas, *args]
    full_env = dict(os.environ if env is None else env)
    model = args[args.index("--model") + 1] if "--model" in args else ""
    # forked from the session's preloading zygote (tests/zygote.py) when it can be: the twin and
    # torch are loaded there once; with one replica the server runs in the forked process itself
    zygote = session_zygote(model if os.path.isdir(model) else None)
    proc: subprocess.Popen[bytes]
    if zygote is not None and zygote.accepts(full_env):
        log.write_bytes(b"")
        proc = zygote.spawn(argv, full_env, ROOT, log)
    else:
        with open(log, "wb") as out:
            proc = subprocess.Popen([sys.executable, "-m", "baton", *argv], env=full_env, stdout=out,
                                    stderr=subprocess.STDOUT, cwd=ROOT)

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
