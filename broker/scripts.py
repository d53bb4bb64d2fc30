"""Lua scripts other than the handoff's: loaded once per server, called with EVALSHA.

A ``NOSCRIPT`` reply (the server restarted or flushed its scripts) loads the script again and
retries the call once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from importlib import resources
from typing import Any

import redis
from redis.exceptions import NoScriptError

from baton.broker.cache import PerClient

__all__ = ["LuaScript"]

Arg = str | bytes | float | int


class LuaScript:
    """One script of ``broker/lua`` by file name."""

    def __init__(self, name: str) -> None:
        self.source = resources.files("baton.broker").joinpath(f"lua/{name}").read_text()
        self.sha = hashlib.sha1(self.source.encode()).hexdigest()
        self._loaded: PerClient[str, bool] = PerClient(maxsize=1)

    def ensure_loaded(self, client: redis.Redis) -> None:
        """Load the script into ``client``'s server unless it was loaded through it already
        (before pipelining EVALSHA calls of it)."""
        self._loaded.get(client, self.sha, lambda: bool(client.script_load(self.source)))

    def queue(self, pipe: Any, keys: Sequence[Arg], args: Sequence[Arg]) -> None:
        """Add one call to a pipeline (load the script first: ``ensure_loaded``). Sent as a raw
        ``EVALSHA``: a Redis Cluster pipeline refuses ``pipe.evalsha`` by name."""
        pipe.execute_command("EVALSHA", self.sha, len(keys), *keys, *args)

    def __call__(self, client: redis.Redis, keys: Sequence[Arg], args: Sequence[Arg]) -> Any:
        """Run the script with ``keys`` and ``args``; return its reply."""
        self.ensure_loaded(client)
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except NoScriptError:
            self._loaded.forget(client, self.sha)
            self.ensure_loaded(client)
            return client.evalsha(self.sha, len(keys), *keys, *args)
