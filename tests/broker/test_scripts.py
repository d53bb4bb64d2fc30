"""The one registry of baton's Lua: a Redis Functions library, per version, with a constants seam and a
script path for Redis 6.2 (which has no Functions), on real servers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import redis

from baton.broker import Keys, Outcome, commit, submit
from baton.broker.budget import count_tool_call
from baton.broker.scripts import Library, Mode, check_library, library, library_constants, render_library
from baton.protocol import Task
from tests.broker.test_commit import _handoff, _read_one
from tests.ops.conftest import redis62  # noqa: F401  (fixture)


def test_the_library_carries_the_shared_constants_and_is_named_by_its_source() -> None:
    source = render_library()
    assert source.startswith(f"#!lua name={library().name}\n") and library().name.startswith("baton_")
    assert "TERMINAL_STATUSES = {['cancelled'] = true, ['done'] = true, ['failed'] = true}" in source
    assert source.count("redis.call('XPENDING'") == 1  # the opening checks are written once, in `claim`
    other = render_library({**library_constants(), "EXTRA": ["a'b"]})
    assert "EXTRA = {'a\\'b'}" in other
    assert Library(other).name != library().name  # another source, another library: versions never collide


def test_a_server_that_lost_the_library_gets_it_again(client: redis.Redis, keys: Keys) -> None:
    assert check_library(client) is Mode.FUNCTIONS
    for i in range(2):
        task = Task(run_id=f"lost-{i}", role="planner", task="t")
        submit(client, keys, task)
        _, entry = _read_one(client, keys, "c1")
        assert commit(client, keys, "planner", "c1", [_handoff(keys, entry, task)]) == [Outcome.COMMITTED]
        client.function_flush()  # a restart without persistence, or an operator's flush
    assert client.function_list() == []
    assert count_tool_call(client, keys, "lost-0", "planner") == ""
    assert client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", library().name)


@pytest.fixture
def old_client(redis62: str) -> Iterator[redis.Redis]:  # noqa: F811
    c = redis.Redis.from_url(redis62)
    c.flushall()
    c.script_flush()
    yield c
    c.close()


def test_on_redis_6_2_the_steps_run_as_scripts(old_client: redis.Redis, keys: Keys) -> None:
    assert check_library(old_client) is Mode.SCRIPTS
    task = Task(run_id="old", role="planner", task="t")
    submit(old_client, keys, task)
    _, entry = _read_one(old_client, keys, "c1")
    assert commit(old_client, keys, "planner", "c1", [_handoff(keys, entry, task)]) == [Outcome.COMMITTED]
    assert old_client.hget(keys.run("old"), "status") == b"running"
    old_client.script_flush()
    library().forget(old_client)
    assert count_tool_call(old_client, keys, "old", "planner") == ""
