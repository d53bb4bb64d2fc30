"""``EmbeddedRedis`` under parallel test workers: a picked port that another process took first."""

from __future__ import annotations

from pathlib import Path

import pytest
import redis

from baton.broker import EmbeddedRedis


def test_a_taken_port_is_replaced_and_the_server_that_answers_is_ours(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "first") as first:
        second = EmbeddedRedis(tmp_path / "second")
        second.port = first.port  # as if a neighbour had bound the picked port before this server
        with second:
            assert second.port != first.port
            assert second.proc is not None
            with redis.Redis(port=second.port) as c:
                assert c.info("server")["process_id"] == second.proc.pid
        with redis.Redis(port=first.port) as c:
            assert c.ping()  # the neighbour was left alone


def test_a_taken_port_that_was_asked_for_is_an_error(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path / "first") as first:
        pinned = EmbeddedRedis(tmp_path / "pinned", port=first.port)
        with pytest.raises(RuntimeError, match=f"port {first.port}"):
            pinned.start()
