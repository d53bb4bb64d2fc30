"""Trace propagation with OpenTelemetry: each hop a span under its submitter's trace.

A task carries a W3C Trace Context ``traceparent`` (and ``tracestate``). Whoever submits puts the
caller's current span there (``trace_fields``; ``current_traceparent`` for the header alone). A worker
opens one ``baton.hop <role>`` span per task, child of that traceparent; the model call (one span per
task, ``baton.batch_size`` says how many tasks shared the batched call) and each tool call are its
children; the next task(s), fan-out parts included, carry the hop span's traceparent, so the trace
continues in the next worker process.

Off and free unless configured: ``configure`` installs the SDK only when ``OTEL_EXPORTER_OTLP_ENDPOINT``
(or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) or ``BATON_OTEL_FILE`` is set, or the application set its
own tracer provider. Otherwise the SDK is not imported, no span object is created and a task's
traceparent passes through unchanged to the next hop.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from ...protocol import Task

__all__ = [
    "OTLP_ENDPOINT_VARIABLES",
    "configure",
    "current_traceparent",
    "end_hop",
    "fields_from_headers",
    "hop_fields",
    "start_hop",
    "trace_fields",
    "traced_model_call",
    "traced_tool_call",
    "tracer",
    "use_hop",
]

log = logging.getLogger("baton.tracing")

TRACER_NAME = "baton"
OTLP_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
"""Setting either turns the OTLP/HTTP exporter on (the standard OpenTelemetry variables)."""

_W3C = TraceContextTextMapPropagator()
_OFF = contextlib.nullcontext()
_RECHECK_S = 1.0
_state: tuple[float, Tracer | None] = (float("-inf"), None)


class _Generated(Protocol):
    @property
    def new_tokens(self) -> int: ...


class _Outcome(Protocol):
    where: str
    error: str


G = TypeVar("G", bound=_Generated)
R = TypeVar("R", bound=_Outcome)


def tracer() -> Tracer | None:
    """The ``baton`` tracer of the global provider, or None while no SDK provider is set (tracing off).

    Asking the API for the provider costs a microsecond, so the answer is kept: for good once a
    provider is set (OpenTelemetry sets it once per process), for a second while there is none (a
    provider the application sets later is used from then on).
    """
    global _state
    now = time.monotonic()
    if now < _state[0]:
        return _state[1]
    provider = trace.get_tracer_provider()
    if isinstance(provider, ProxyTracerProvider | NoOpTracerProvider):
        _state = (now + _RECHECK_S, None)
    else:
        _state = (float("inf"), provider.get_tracer(TRACER_NAME))
    return _state[1]


def configure(service_name: str, *, span_file: str = "") -> bool:
    """Install the SDK's tracer provider when an exporter is asked for; return whether spans are recorded.

    OTLP over HTTP when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (the exporter reads the standard
    variables: headers, timeout, compression); ``span_file`` (``BATON_OTEL_FILE``) appends one JSON
    span per line. ``OTEL_SERVICE_NAME`` wins over ``service_name``; ``OTEL_SDK_DISABLED=true`` keeps
    it off. A provider set by the application is used as it is.
    """
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if tracer() is not None:
        return True
    otlp = any(os.environ.get(v) for v in OTLP_ENDPOINT_VARIABLES)
    if not otlp and not span_file:
        return False
    from opentelemetry.sdk.resources import SERVICE_NAME, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

    attributes = {} if os.environ.get("OTEL_SERVICE_NAME") else {SERVICE_NAME: service_name}
    provider = TracerProvider(resource=Resource.create(attributes))
    if otlp:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if span_file:
        from .spanfile import JsonLinesSpanExporter

        provider.add_span_processor(SimpleSpanProcessor(JsonLinesSpanExporter(span_file)))
    trace.set_tracer_provider(provider)
    _forget()
    log.info("tracing on: %s", ", ".join(filter(None, ["OTLP" if otlp else "", span_file])))
    return True


def _forget() -> None:
    global _state
    _state = (float("-inf"), None)


# propagation -------------------------------------------------------------------------------------
def trace_fields(context: Context | None = None) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` of the current span (or ``context``'s), for a new ``Task``:
    ``Task(..., **trace_fields())``. Both empty when there is no valid span."""
    carrier: dict[str, str] = {}
    _W3C.inject(carrier, context=context)
    return {"traceparent": carrier.get("traceparent", ""), "tracestate": carrier.get("tracestate", "")}


def current_traceparent() -> str:
    """The W3C traceparent of the caller's current span; empty when there is none."""
    return trace_fields()["traceparent"]


def fields_from_headers(headers: Mapping[str, str]) -> dict[str, str]:
    """``trace_fields`` for work submitted over HTTP: the current span's (an instrumented server's), else
    the request's own ``traceparent``/``tracestate`` headers (a malformed header gives empty fields)."""
    current = trace_fields()
    if current["traceparent"] or "traceparent" not in headers:
        return current
    carrier = {k: headers[k] for k in ("traceparent", "tracestate") if k in headers}
    return trace_fields(_W3C.extract(carrier, context=Context()))


def _parent(task: Task) -> Context:
    if not task.traceparent:
        return Context()
    return _W3C.extract({"traceparent": task.traceparent, "tracestate": task.tracestate}, context=Context())


# hops --------------------------------------------------------------------------------------------
def start_hop(task: Task, role: str, agent: str, consumer: str) -> Span | None:
    """Open the hop span of ``task`` (child of its traceparent); None when tracing is off."""
    t = tracer()
    if t is None:
        return None
    return t.start_span(f"baton.hop {role}", context=_parent(task), kind=SpanKind.CONSUMER, attributes={
        "baton.run_id": task.run_id, "baton.role": role, "baton.agent": agent, "baton.hop": task.hop,
        "baton.msg_id": task.id, "baton.workflow": task.workflow, "baton.consumer": consumer,
        "baton.part": task.part, "baton.parts": task.parts,
    })


def use_hop(span: Span | None) -> contextlib.AbstractContextManager[Any]:
    """Make the hop span current (tool call spans become its children); nothing when tracing is off."""
    if span is None:
        return _OFF
    return trace.use_span(span, end_on_exit=False, record_exception=False, set_status_on_exception=False)


def hop_fields(span: Span | None, task: Task) -> dict[str, str]:
    """What the hop's next task(s) carry: the hop span's traceparent, or ``task``'s own when untraced."""
    if span is None:
        return {"traceparent": task.traceparent, "tracestate": task.tracestate}
    return trace_fields(trace.set_span_in_context(span))


def end_hop(span: Span | None, *, tokens: int | None = None, outcome: str = "", error: str = "") -> None:
    """Close a hop span with its tokens and what became of it (``error``: the reason it failed)."""
    if span is None:
        return
    if tokens is not None:
        span.set_attribute("baton.tokens", tokens)
    if outcome:
        span.set_attribute("baton.outcome", outcome)
    if error:
        span.set_status(Status(StatusCode.ERROR, error))
    span.end()


# children ----------------------------------------------------------------------------------------
def traced_model_call(spans: Sequence[Span | None], call: Callable[[], Sequence[G]], *, model: str,
                      role: str) -> list[G]:
    """Run one (batched) model call; with tracing on, each traced task gets a ``baton.model`` child span."""
    t = tracer()
    if t is None or not any(spans):
        return list(call())
    attrs: dict[str, str | int] = {"baton.batch_size": len(spans), "gen_ai.request.model": model, "baton.role": role}
    children = [t.start_span(f"baton.model {role}", context=trace.set_span_in_context(s), kind=SpanKind.CLIENT,
                             attributes=attrs) if s is not None else None for s in spans]
    try:
        out = list(call())
    except BaseException as exc:
        for c in children:
            if c is not None:
                c.record_exception(exc)
                c.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
                c.end()
        raise
    for c, g in zip(children, out, strict=False):
        if c is not None:
            c.set_attribute("gen_ai.usage.output_tokens", g.new_tokens)
            c.end()
    return out


def traced_tool_call(tool: str, call: Callable[[], R]) -> R:
    """Run one tool call; with tracing on, as a ``baton.tool <name>`` child of the current span."""
    t = tracer()
    if t is None:
        return call()
    with t.start_as_current_span(f"baton.tool {tool}", kind=SpanKind.CLIENT,
                                 attributes={"baton.tool": tool}) as span:
        outcome = call()
        span.set_attribute("baton.tool.where", outcome.where)
        if outcome.error:
            span.set_status(Status(StatusCode.ERROR, outcome.error))
        return outcome
