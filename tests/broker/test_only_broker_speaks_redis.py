"""Only ``broker/`` speaks Redis: nothing under ``agents/`` (the public face ``agents/client/``
included) or ``protocol/`` imports redis or issues Redis commands.

An AST check: no ``import redis``/``from redis ...``, and no call of a Redis command method on a
receiver that looks like a Redis client (``client``, ``redis``, ``pipe``, ``self.client``,
``ctx.client``, ...). Method names that are not Redis commands (``request``, ``close``) are not
flagged, and neither is ``.get`` on anything that is not named like a client (dicts).
"""

from __future__ import annotations

import ast

import pytest

from tests.conftest import ROOT

REDIS_COMMANDS = frozenset({
    "xadd", "xreadgroup", "xread", "xack", "xclaim", "xautoclaim", "xpending", "xpending_range", "xrange",
    "xrevrange", "xlen", "xtrim", "xdel", "xinfo_stream", "xinfo_groups", "xinfo_consumers", "xgroup_create",
    "xgroup_destroy", "xgroup_delconsumer", "xgroup_createconsumer", "xgroup_setid",
    "hget", "hset", "hsetnx", "hgetall", "hmget", "hdel", "hlen", "hincrby", "hexists", "hkeys", "hvals",
    "smismember", "sismember", "sadd", "srem", "smembers", "sscan", "scard",
    "get", "set", "mget", "mset", "setnx", "getdel", "incr", "incrby", "decr",
    "delete", "unlink", "exists", "expire", "pexpire", "ttl", "pttl", "persist", "type", "rename",
    "scan", "scan_iter", "keys", "flushall", "flushdb",
    "pipeline", "transaction", "multi", "execute", "watch", "unwatch",
    "eval", "evalsha", "script_load", "register_script", "fcall",
    "blpop", "brpop", "lpush", "rpush", "lpop", "rpop", "lrange", "llen", "ltrim",
    "zadd", "zrange", "zrevrange", "zrangebyscore", "zrevrangebyscore", "zrem", "zremrangebyscore", "zcard",
    "zscore", "zcount",
    "ping", "info", "config_get", "config_set", "acl_setuser", "acl_log", "client_list", "publish", "subscribe",
})
"""Redis commands as redis-py names them (the ones a worker or an operator tool might issue)."""

CLIENT_NAMES = frozenset({"client", "redis", "pipe", "pipeline", "_blocking"})
"""Names (variables or attributes: ``client``, ``self.client``, ``ctx.client``) of Redis clients."""


def _receiver_name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def violations(source: str, filename: str = "<snippet>") -> list[str]:
    """Every ``import redis`` and Redis command call on a client-like receiver in ``source``."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source, filename)):
        if isinstance(node, ast.Import):
            found += [f"{filename}:{node.lineno}: import {a.name}" for a in node.names
                      if a.name == "redis" or a.name.startswith("redis.")]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and (
            node.module == "redis" or node.module.startswith("redis.")
        ):
            found.append(f"{filename}:{node.lineno}: from {node.module} import ...")
        elif (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in REDIS_COMMANDS and _receiver_name(node.func.value) in CLIENT_NAMES):
            found.append(f"{filename}:{node.lineno}: {ast.unparse(node.func)}(...)")
    return found


@pytest.mark.parametrize("package", ["agents", "protocol"])  # agents/ holds the public face, agents/client/
def test_no_module_outside_the_broker_speaks_redis(package: str) -> None:
    files = sorted((ROOT / package).rglob("*.py"))
    assert len(files) > 5 and (package != "agents" or any(p.parent.name == "client" for p in files))
    found = [v for path in files for v in violations(path.read_text(), str(path.relative_to(ROOT)))]
    assert found == []


@pytest.mark.parametrize("snippet", [
    "import redis",
    "import redis.exceptions",
    "from redis import Redis",
    "from redis.exceptions import ResponseError",
    "self.client.xreadgroup('g', 'c', {'s': '>'})",
    "_, msgs, *_ = self.client.xautoclaim(stream, 'tools', me, 1000, '0-0')",
    "pipe = self.client.pipeline(transaction=True)\npipe.xadd(k, {'msg': b''})\npipe.execute()",
    "for key in client.scan_iter(match='baton:hb:*'):\n    raw = client.get(key)",
    "client.ping()",
    "ctx.client.hget(key, 'status')",
    "flags = self.client.smismember(keys.cancelled(), ids)",
])
def test_the_check_flags_what_the_old_code_did(snippet: str) -> None:
    assert violations(snippet)


@pytest.mark.parametrize("snippet", [
    "resp = self.client.request('POST', '/v1/completions', json=body)",  # httpx, agents/backends/http.py
    "self.client.close()",
    "value = options.get('top_k', 3)",  # a dict
    "raw = fields.get(b'msg')",
    "from baton.broker import Redis, BrokerError",
    "import redistools",
])
def test_the_check_leaves_non_redis_calls_alone(snippet: str) -> None:
    assert violations(snippet) == []

