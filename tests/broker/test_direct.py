"""The hot path's held connection (broker/direct.py) against a real Redis: redis-py's replies, errors
in place, and redis-py's own path again when the connection breaks."""

from __future__ import annotations

from pathlib import Path

import redis

from baton.broker import EmbeddedRedis, direct


def test_execute_parses_replies_as_redis_py_does(client: redis.Redis) -> None:
    client.xgroup_create("s", "g", id="0", mkstream=True)
    first, second = client.xadd("s", {"msg": b"one"}), client.xadd("s", {"msg": b"two"})
    via_client = client.xreadgroup("g", "c1", {"s": ">"}, count=1)
    via_direct = direct.execute(client, "XREADGROUP", "GROUP", "g", "c1", "COUNT", 1, "STREAMS", "s", ">")
    assert via_client == [[b"s", [(first, {b"msg": b"one"})]]]
    assert via_direct == [[b"s", [(second, {b"msg": b"two"})]]]
    assert direct.execute(client, "XREADGROUP", "GROUP", "g", "c1", "COUNT", 1, "STREAMS", "s", ">") == []
    client.hset("h", mapping={"a": "1"})
    assert direct.execute(client, "HGETALL", "h") == client.hgetall("h") == {b"a": b"1"}


def test_pipeline_keeps_each_error_in_its_place(client: redis.Redis) -> None:
    client.set("str", "x")
    replies = direct.pipeline(client, [["SET", "k", "v"], ["HGETALL", "str"], ["GET", "k"]])
    assert replies[0] is True and replies[2] == b"v"
    assert isinstance(replies[1], redis.ResponseError) and "WRONGTYPE" in str(replies[1])
    assert direct.pipeline(client, []) == []


def test_a_broken_connection_falls_back_to_redis_pys_reconnect(tmp_path: Path) -> None:
    server = EmbeddedRedis(tmp_path / "r").start()
    try:
        client = redis.Redis.from_url(server.url, retry_on_error=[redis.ConnectionError])
        assert direct.execute(client, "SET", "k", "1") is True
        port = server.port
        server.stop()
        server = EmbeddedRedis(tmp_path / "r", port=port).start()  # same port, the held socket is dead
        assert direct.execute(client, "GET", "k") == b"1"  # the AOF kept it; redis-py reconnected
        assert direct.pipeline(client, [["INCR", "n"], ["INCR", "n"]]) == [1, 2]
        server.stop()
        server = EmbeddedRedis(tmp_path / "r", port=port).start()
        assert direct.pipeline(client, [["GET", "n"]]) == [b"2"]
    finally:
        server.stop()
