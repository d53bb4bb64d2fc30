"""A tool worker: serves the call streams of some tools (``baton worker --tools NAME...``).

Risky or slow tools run here, isolated from the model workers and scaled on their own: every
tool worker of a tool is a consumer in the group ``tools`` of the tool's call stream, served by
the broker's ``ConsumerLoop`` like a role's group (own pending calls first, NOGROUP recovery,
reclaim of dead consumers' and expired calls, back-off on broker errors). A call is answered
with a ``tool_result`` pushed to the caller's reply list, then acked; a bad entry, or one
delivered more than ``max_deliveries`` times, is dead-lettered and acked; a call whose caller
has already timed out is acked without running. The heartbeat thread renews the lease of the
calls in flight.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from ...broker import BrokerError, ConsumerLoop, Entry, Redis, connect, consumer_name
from ...broker.toolcalls import TOOL_GROUP, dead_letter_call, ensure_tool_group, reply, tool_streams
from ...protocol import DeadLetter, ProtocolError, ToolCall, ToolResult, decode, encode
from ..runtime.lifecycle import heartbeat, heartbeat_loop, install_signal_handlers
from ..settings import Settings
from ..workflow.spec import SEED, ToolConfig, Workflow
from .base import ToolContext
from .registry import get_tool
from .runner import run_tool

__all__ = ["ToolWorker"]

log = logging.getLogger("baton.tools")

BATCH = 8
"""Call entries read at a time (they are answered one after another)."""


class ToolWorker:
    """One process serving the tools ``names`` (their options and timeouts from ``workflow``)."""

    def __init__(self, settings: Settings, names: list[str], workflow: Workflow = SEED,
                 *, client: Redis | None = None) -> None:
        for name in names:
            get_tool(name)  # UnknownTool early, before serving anything
        self.settings = settings
        self.workflow = workflow
        self.keys = settings.keys()
        self.client = client or connect(settings.redis_url, socket_timeout=settings.block_ms / 1000 + 10)
        self.consumer = consumer_name(TOOL_GROUP)
        self.tools = {self.keys.tool_stream(n): n for n in names}
        self.streams = tool_streams(self.client, self.keys, list(self.tools.values()), self.consumer)
        self.stopping = threading.Event()
        self.loop = ConsumerLoop(self.streams, self.stopping, count=BATCH, block_ms=settings.block_ms,
                                 lease_ms=settings.lease_ms, reclaim_interval_s=settings.reclaim_interval_s,
                                 retry_backoff_s=settings.retry_backoff_s)
        self.executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="tool")
        self.answered = 0
        self.dead_lettered = 0
        self._in_flight: list[Entry] = []
        self._lock = threading.Lock()

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT: finish the call in flight, then exit; past ``BATON_SHUTDOWN_GRACE_S`` or at
        a second signal, exit at once (the call stays pending for another tool worker)."""
        install_signal_handlers(self.stopping, self.settings.shutdown_grace_s)

    def _beat(self) -> None:
        beat = heartbeat(self.consumer, TOOL_GROUP, self.answered, tools=sorted(self.tools.values()))
        self.streams.beat(beat, self.settings.heartbeat_ttl_s)

    def _heartbeat_loop(self) -> None:
        heartbeat_loop(self.stopping, self.settings.heartbeat_interval_s, self._beat, self.streams, self._entries)

    def _entries(self) -> list[Entry]:
        with self._lock:
            return list(self._in_flight)

    def run(self) -> int:
        """Serve until stopped; return the exit code."""
        for name in self.tools.values():
            ensure_tool_group(self.client, self.keys, name)
        self._beat()
        beater = threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)
        beater.start()
        log.info("tool worker %s ready (tools %s)", self.consumer, ", ".join(sorted(self.tools.values())))
        try:
            self.loop.run(self.process)
        finally:
            self.stopping.set()
            beater.join(timeout=2)
            with contextlib.suppress(BrokerError):
                self.streams.forget()
            self.executor.shutdown(wait=False, cancel_futures=True)
        log.info("tool worker %s stopped: %d answered, %d dead-lettered", self.consumer, self.answered,
                 self.dead_lettered)
        return 0

    def process(self, entries: list[Entry]) -> bool:
        """Answer a batch of call entries, leasing them while they run; nothing is left pending."""
        with self._lock:
            self._in_flight = list(entries)
        try:
            for entry in entries:
                self.handle(entry)
        finally:
            with self._lock:
                self._in_flight = []
        return False

    def handle(self, entry: Entry) -> None:
        """Answer one call entry (or dead-letter it); always acks it."""
        stream, entry_id, raw = entry.stream, entry.id, entry.data
        if raw is None:
            return self._dead(entry, b"", "stream entry has no 'msg' field", "")
        if entry.deliveries > self.settings.max_deliveries:
            return self._dead(entry, raw, f"delivered {entry.deliveries} times (max_deliveries="
                                          f"{self.settings.max_deliveries}); the call killed its tool worker "
                                          "every time", "")
        try:
            call = decode(raw)
        except ProtocolError as exc:
            return self._dead(entry, raw, str(exc), "")
        if not isinstance(call, ToolCall):
            return self._dead(entry, raw, f"unexpected message type {type(call).__name__!r}", call.run_id)
        if call.tool != self.tools[stream]:
            return self._dead(entry, raw, f"call for tool {call.tool!r} on the stream of "
                                          f"{self.tools[stream]!r}", call.run_id)
        reply_key = self.keys.tool_replies(call.run_id, call.id)
        if call.reply_to and call.reply_to != reply_key:
            return self._dead(entry, raw, "reply_to is not this call's reply key", call.run_id)
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

    def _dead(self, entry: Entry, raw: bytes, reason: str, run_id: str) -> None:
        log.warning("dead-lettering tool call %s of %s: %s", entry.id, entry.stream, reason)
        dl = DeadLetter(run_id=run_id, role=TOOL_GROUP, reason=reason, original=raw.decode("utf-8", "replace"),
                        stream=entry.stream, entry_id=entry.id, attempts=entry.deliveries)
        dead_letter_call(self.client, self.keys, entry.stream, entry.id, encode(dl))
        self.dead_lettered += 1
