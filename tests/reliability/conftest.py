"""Fixtures for the reliability suite: echo workers with fault injection, a private Redis.

The echo backend is the deterministic fast model here (crash, retry and shutdown tests are
about the runtime, not the text); the twin runs the real model in ``test_bad_input`` and in the
end-to-end suite. Faults are injected through the echo backend's documented prompt markers
(``[[fault:crash]]``, ``[[fault:raise:N]]``, ``[[fault:sleep:S]]``), never with mocks.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis
from tests.conftest import Workers

ECHO = {"BATON_MODEL": "echo", "BATON_FAULT_INJECTION": "1"}


@pytest.fixture
def echo(workers: Workers) -> Workers:
    """The ``workers`` fixture with the echo model and fault injection on."""
    workers.env.update(ECHO)
    return workers


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[EmbeddedRedis]:
    """A redis-server of this test only (AOF everysec), for tests that kill or reconfigure it."""
    server = EmbeddedRedis(tmp_path / "private-redis").start()
    yield server
    server.stop()


@pytest.fixture
def private_client(private_redis: EmbeddedRedis) -> Iterator[redis.Redis]:
    """A client of the private server."""
    c = redis.Redis.from_url(private_redis.url)
    yield c
    c.close()
