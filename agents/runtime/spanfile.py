"""A span exporter that appends one JSON object per finished span to a file (``BATON_OTEL_FILE``).

For tests and local debugging without a collector: several processes may share the file (each batch
of lines is one ``write`` on a file opened for appending). Ids are lowercase hex, as in a
traceparent; ``parent_span_id`` is empty for a root span.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import Any

import msgspec
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

__all__ = ["JsonLinesSpanExporter", "span_record"]

_JSON = msgspec.json.Encoder()


def span_record(span: ReadableSpan) -> dict[str, Any]:
    """One span as a JSON-ready dict: names, hex ids, times (ns since the epoch), status, attributes."""
    ctx, parent = span.get_span_context(), span.parent
    return {
        "name": span.name,
        "trace_id": f"{ctx.trace_id:032x}" if ctx else "",
        "span_id": f"{ctx.span_id:016x}" if ctx else "",
        "parent_span_id": f"{parent.span_id:016x}" if parent else "",
        "kind": span.kind.name,
        "start": span.start_time,
        "end": span.end_time,
        "status": span.status.status_code.name,
        "description": span.status.description or "",
        "attributes": dict(span.attributes or {}),
        "service": span.resource.attributes.get("service.name", ""),
        "pid": os.getpid(),
    }


class JsonLinesSpanExporter(SpanExporter):
    """Append each exported span to ``path`` as one line of JSON."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._fd: int | None = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        """Write the spans, one line each, in one append."""
        data = b"".join(_JSON.encode(span_record(s)) + b"\n" for s in spans)
        with self._lock:
            if self._fd is None:
                return SpanExportResult.FAILURE
            os.write(self._fd, data)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        """Close the file."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        """Nothing is buffered: every export is written at once."""
        return True
