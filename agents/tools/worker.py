"""A tool worker: serves the call streams of some tools (``baton worker --tools NAME...``).

Risky or slow tools run here, isolated from the model workers and scaled on their own: every
tool worker of a tool is a consumer in the group ``tools`` of the tool's call stream. A call is
answered with a ``tool_result`` pushed to the caller's reply list, then acked; a bad entry is
dead-lettered and acked; a call whose caller has already timed out is acked without running.
Pending calls of dead tool workers are reclaimed after the lease.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import Any

import redis

from baton.agents.settings import Settings
from baton.agents.tools.base import ToolContext
from baton.agents.tools.registry import get_tool
from baton.agents.tools.runner import run_tool
from baton.agents.workflow.spec import SEED, ToolConfig, Workflow
from baton.broker import Keys, connect
from baton.broker.text import as_text
from baton.broker.toolcalls import TOOL_GROUP, ensure_tool_group, reply
from baton.protocol import DeadLetter, ProtocolError, ToolCall, ToolResult, decode, encode

__all__ = ["ToolWorker"]

log = logging.getLogger("baton.tools")


class ToolWorker:
    """One process serving the tools ``names`` (their options and timeouts from ``workflow``)."""

    def __init__(self, settings: Settings, names: list[str], workflow: Workflow = SEED,
                 *, client: redis.Redis | None = None) -> None:
        for name in names:
            get_tool(name)  # UnknownTool early, before serving anything
        self.settings = settings
        self.workflow = workflow
        self.keys = Keys(settings.prefix, settings.partitions)
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        self.consumer = f"tools-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.tools = {self.keys.tool_stream(n): n for n in names}
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tool")
        self.stopping = threading.Event()
        self.answered = 0
        self.dead_lettered = 0

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish the call in flight, then exit; a second signal exits at once."""
        def handler(signum: int, frame: FrameType | None) -> None:
            if self.stopping.is_set():
                os._exit(1)
            self.stopping.set()

        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)

    def _beat(self) -> None:
        info = {"consumer": self.consumer, "role": "tools", "tools": sorted(self.tools.values()),
                "host": socket.gethostname(), "pid": os.getpid(), "processed": self.answered, "at": time.time()}
        ttl_ms = int(self.settings.heartbeat_ttl_s * 1000)
        self.client.set(self.keys.heartbeat(self.consumer), json.dumps(info), px=ttl_ms)

    def _heartbeat_loop(self) -> None:
        while not self.stopping.wait(self.settings.heartbeat_interval_s):
            try:
                self._beat()
            except redis.RedisError as exc:
                log.debug("heartbeat failed: %s", exc)

    def run(self) -> int:
        """Serve until stopped; return the exit code."""
        for name in self.tools.values():
            ensure_tool_group(self.client, self.keys, name)
        self._beat()
        beater = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beater.start()
        log.info("tool worker %s ready (tools %s)", self.consumer, ", ".join(sorted(self.tools.values())))
        pending, next_reclaim = True, 0.0
        while not self.stopping.is_set():
            try:
                if time.monotonic() >= next_reclaim:
                    pending = self._reclaim() or pending
                    next_reclaim = time.monotonic() + self.settings.reclaim_interval_s
                entries = self._read(pending)
                if pending and not entries:
                    pending = False
                for stream, entry_id, fields in entries:
                    self.handle(stream, entry_id, fields)
            except (redis.ConnectionError, redis.TimeoutError, OSError) as exc:
                log.warning("Redis unavailable (%s); retrying", exc)
                pending = True
                self.stopping.wait(self.settings.retry_backoff_s * 4)
        beater.join(timeout=2)
        with contextlib.suppress(redis.RedisError):
            self.client.delete(self.keys.heartbeat(self.consumer))
        self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("tool worker %s stopped: %d answered, %d dead-lettered", self.consumer, self.answered,
                 self.dead_lettered)
        return 0

    def _read(self, pending: bool) -> list[tuple[str, str, dict[bytes, bytes]]]:
        ids: dict[Any, Any] = dict.fromkeys(self.tools, "0" if pending else ">")
        reply_: Any = self.client.xreadgroup(TOOL_GROUP, self.consumer, ids, count=8,
                                             block=None if pending else self.settings.block_ms)
        return [(as_text(stream), as_text(eid), fields or {})
                for stream, items in reply_ or [] for eid, fields in items]

    def _reclaim(self) -> bool:
        claimed = False
        for stream in self.tools:
            _, msgs, *_ = self.client.xautoclaim(stream, TOOL_GROUP, self.consumer, self.settings.lease_ms, "0-0",
                                                 count=100)
            claimed = claimed or bool(msgs)
        return claimed

    def handle(self, stream: str, entry_id: str, fields: dict[bytes, bytes]) -> None:
        """Answer one call entry (or dead-letter it); always acks it."""
        raw = fields.get(b"msg")
        if raw is None:
            return self._dead(stream, entry_id, b"", "stream entry has no 'msg' field", "")
        try:
            call = decode(raw)
        except ProtocolError as exc:
            return self._dead(stream, entry_id, raw, str(exc), "")
        if not isinstance(call, ToolCall):
            return self._dead(stream, entry_id, raw, f"unexpected message type {type(call).__name__!r}", call.run_id)
        if call.tool != self.tools[stream]:
            return self._dead(stream, entry_id, raw, f"call for tool {call.tool!r} on the stream of "
                                                     f"{self.tools[stream]!r}", call.run_id)
        reply_key = self.keys.tool_replies(call.run_id, call.id)
        if call.reply_to and call.reply_to != reply_key:
            return self._dead(stream, entry_id, raw, "reply_to is not this call's reply key", call.run_id)
        remaining = call.created_at + call.timeout - time.time()
        if remaining <= 0:
            log.info("call %s to %s expired before it was served; dropped", call.id, call.tool)
            reply(self.client, stream, entry_id, None, None)
            return None
        cfg = self.workflow.tools.get(call.tool, ToolConfig())
        ctx = ToolContext(client=self.client, keys=self.keys, run_id=call.run_id, agent=call.caller,
                          options=cfg.options, base_dir=self.workflow.base_dir)
        output, error = run_tool(self.executor, call.tool, call.args, ctx, min(remaining, cfg.timeout))
        result = ToolResult(run_id=call.run_id, parent_id=call.id, tool=call.tool, call_id=call.id,
                            output=output, error=error)
        reply(self.client, stream, entry_id, reply_key if call.reply_to else None, encode(result))
        self.answered += 1
        return None

    def _dead(self, stream: str, entry_id: str, raw: bytes, reason: str, run_id: str) -> None:
        log.warning("dead-lettering tool call %s of %s: %s", entry_id, stream, reason)
        dl = DeadLetter(run_id=run_id, role="tools", reason=reason, original=raw.decode("utf-8", "replace"),
                        stream=stream, entry_id=entry_id)
        pipe = self.client.pipeline(transaction=True)
        pipe.xadd(self.keys.dead(0), {"msg": encode(dl)})
        pipe.xack(stream, TOOL_GROUP, entry_id)
        pipe.execute()
        self.dead_lettered += 1
