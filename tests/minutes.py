"""Rate-limit usage is counted per Redis minute: tests that read it start well inside one."""

from __future__ import annotations

import redis

from tests.waiting import wait_for

__all__ = ["inside_a_minute"]


def inside_a_minute(client: redis.Redis, margin_s: int = 20) -> None:
    """Wait until Redis' clock is at least ``margin_s`` seconds before the next minute, so the
    counts a test makes next are all in one minute (the sliding window weighs the previous one)."""
    wait_for(lambda: int(client.time()[0]) % 60 < 60 - margin_s, 70, "a fresh Redis minute", interval=0.2)
