"""Logging for workers and the CLI: readable text on a terminal, JSON lines on request.

Each record carries the worker's role and consumer, and the run and message ids of the work
in hand (set with ``bind``), so one run can be followed across processes with grep or jq.
"""

from __future__ import annotations

import contextvars
import json
import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["bind", "context", "setup_logging"]

_context: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("baton_log_context", default=None)


@contextmanager
def bind(**fields: str) -> Iterator[None]:
    """Add fields (e.g. ``run_id``, ``msg_id``) to every log record inside the block."""
    token = _context.set({**(_context.get() or {}), **fields})
    try:
        yield
    finally:
        _context.reset(token)


def context(**fields: str) -> None:
    """Set fields for the rest of this context (e.g. ``role`` and ``consumer`` at start-up)."""
    _context.set({**(_context.get() or {}), **fields})


class _ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.baton = (_context.get() or {})
        return True


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **getattr(record, "baton", {}),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return json.dumps(doc, ensure_ascii=False)


class _TextFormatter(logging.Formatter):
    """``HH:MM:SS LEVEL logger: message [tags]`` (UTC), an exception's traceback after it. A worker
    logs a line per hop: the clock's text is made once a second, not per record."""

    def __init__(self) -> None:
        super().__init__()
        self._clock = (-1, "")
        """The second last formatted and its text (one object: threads share the formatter)."""

    def format(self, record: logging.LogRecord) -> str:
        second, clock = self._clock
        if int(record.created) != second:
            second = int(record.created)
            clock = time.strftime("%H:%M:%S", time.gmtime(second))
            self._clock = (second, clock)
        line = f"{clock} {record.levelname} {record.name}: {record.getMessage()}"
        ctx = getattr(record, "baton", None)
        if ctx:
            tags = " ".join(f"{k}={v}" for k, v in ctx.items() if v)
            if tags:
                line = f"{line} [{tags}]"
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        elif record.stack_info:
            line = f"{line}\n{self.formatStack(record.stack_info)}"
        return line


def setup_logging(fmt: str = "text", level: str = "INFO") -> None:
    """Configure the root logger once: ``fmt`` is ``text`` or ``json``."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_ContextFilter())
    if fmt == "json":
        handler.setFormatter(_JsonFormatter())
    else:
        handler.setFormatter(_TextFormatter())
    # No format here shows the caller's file and line, its thread or its process: skip finding them
    # for every record (the logging HOWTO's "Optimization").
    logging._srcfile = None  # type: ignore[attr-defined]
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("httpx", "urllib3", "transformers", "huggingface_hub", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
