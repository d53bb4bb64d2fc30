"""Trace propagation across worker processes: one trace from the caller's span to the last hop.

The caller's span is recorded in this process by the SDK's in-memory exporter (a local provider, so
the rest of the suite stays untraced); worker processes write their spans to a ``BATON_OTEL_FILE``
(one JSON span per line), since they cannot share the in-memory exporter; one test exports over OTLP/HTTP
to a small receiver in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import redis
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from baton.agents.runtime.tracing import current_traceparent, fields_from_headers, trace_fields
from baton.agents.settings import Settings
from baton.agents.submit import new_task
from baton.agents.workflow.spec import SEED
from baton.broker import Keys, get_run, submit
from baton.protocol import ProtocolError, Task, decode
from tests.conftest import ROOT, Workers
from tests.e2e.helpers import wait_runs
from tests.waiting import wait_for

FANOUT = str(ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml")
ECHO = {"BATON_MODEL": "echo"}


def _caller() -> tuple[Any, InMemorySpanExporter]:
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    return provider.get_tracer("test-client"), memory


def _spans(path: Path, hops: int) -> list[dict[str, Any]]:
    """The spans in ``path`` once ``hops`` hop spans are there (a hop span ends just after its commit)."""
    def read() -> list[dict[str, Any]] | None:
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return rows if sum(r["name"].startswith("baton.hop ") for r in rows) >= hops else None

    return wait_for(read, 30, f"{hops} hop spans in {path}")


def _tasks(client: redis.Redis, keys: Keys, workflow: str, role: str) -> list[Task]:
    tasks = [decode(f[b"msg"]) for _, f in client.xrange(keys.stream(workflow, role))]
    assert all(isinstance(t, Task) for t in tasks)
    return tasks  # type: ignore[return-value]


def _untraced(env: dict[str, str]) -> None:
    for name in [k for k in env if k.startswith("OTEL_")]:
        del env[name]


def test_seed_chain_is_one_trace_across_three_worker_processes(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    _untraced(workers.env)
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env={**ECHO, "BATON_OTEL_FILE": str(spans_file)})
    workers.wait_ready(client)
    tracer, memory = _caller()
    with tracer.start_as_current_span("application request") as caller:
        task = new_task(SEED, "Explain tracing.", Settings())  # what baton submit / baton run build
    ctx = caller.get_span_context()
    trace_id, caller_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    assert task.traceparent.startswith(f"00-{trace_id}-{caller_id}-")
    run_id = submit(client, keys, task)
    assert wait_runs(client, keys, [run_id])[run_id]["status"] == "done", workers.logs()
    assert get_run(client, keys, run_id)["trace_id"] == trace_id  # type: ignore[index]

    spans = _spans(spans_file, 3)
    assert {s["trace_id"] for s in spans} == {trace_id}
    assert [s.name for s in memory.get_finished_spans()] == ["application request"]
    hop = {s["attributes"]["baton.role"]: s for s in spans if s["name"].startswith("baton.hop ")}
    assert sorted(hop) == ["planner", "researcher", "summarizer"] and len(hop) == 3
    assert hop["planner"]["parent_span_id"] == caller_id
    assert hop["researcher"]["parent_span_id"] == hop["planner"]["span_id"]
    assert hop["summarizer"]["parent_span_id"] == hop["researcher"]["span_id"]
    assert len({s["pid"] for s in hop.values()}) == 3  # three processes, one trace
    for role, h in hop.items():
        attrs = h["attributes"]
        assert h["name"] == f"baton.hop {role}" and h["status"] != "ERROR"
        assert attrs["baton.run_id"] == run_id and attrs["baton.workflow"] == "seed"
        assert attrs["baton.outcome"] == "committed" and attrs["baton.tokens"] == 0  # echo generates none
        (model,) = [s for s in spans if s["parent_span_id"] == h["span_id"]
                    and not s["name"].startswith("baton.hop ")]
        assert model["name"] == f"baton.model {role}" and model["attributes"]["baton.batch_size"] >= 1
        assert model["attributes"]["gen_ai.usage.output_tokens"] == attrs["baton.tokens"]
    hop_ids = [hop[r]["attributes"]["baton.hop"] for r in ("planner", "researcher", "summarizer")]
    assert hop_ids == [0, 1, 2]
    (researcher_task,) = _tasks(client, keys, "seed", "researcher")  # the handoff carries the hop span
    assert researcher_task.traceparent.startswith(f"00-{trace_id}-{hop['planner']['span_id']}-")


def test_fan_out_parts_each_carry_the_hop_span_and_tool_calls_are_children(
    client: redis.Redis, keys: Keys, workers: Workers, tmp_path: Path
) -> None:
    spans_file = tmp_path / "spans.jsonl"
    _untraced(workers.env)
    env = {**ECHO, "BATON_OTEL_FILE": str(spans_file), "BATON_BATCH_SIZE": "1"}
    for role in ("planner", "researcher", "researcher", "summarizer"):
        workers.spawn(role, "--workflow", FANOUT, env=env)
    workers.wait_ready(client, 4)
    tracer, _ = _caller()
    with tracer.start_as_current_span("fan-out request"):
        run_id = submit(client, keys, Task(run_id="traced-fan", role="planner", task="Topic",
                                           workflow="research_fanout", **trace_fields()))
    assert wait_runs(client, keys, [run_id], timeout=120)[run_id]["status"] == "done", workers.logs()

    spans = _spans(spans_file, 5)
    assert len({s["trace_id"] for s in spans}) == 1
    by_id = {s["span_id"]: s for s in spans}
    hops = [s for s in spans if s["name"].startswith("baton.hop ")]
    (planner,) = [s for s in hops if s["name"] == "baton.hop planner"]
    researchers = [s for s in hops if s["name"] == "baton.hop researcher"]
    assert sorted(s["attributes"]["baton.part"] for s in researchers) == [0, 1, 2]
    assert {s["parent_span_id"] for s in researchers} == {planner["span_id"]}
    parts = _tasks(client, keys, "research_fanout", "researcher")
    assert {t.traceparent.split("-")[2] for t in parts} == {planner["span_id"]} and len(parts) == 3
    for r in researchers:
        children = sorted(s["name"] for s in spans if s["parent_span_id"] == r["span_id"]
                          and not s["name"].startswith("baton.hop "))
        assert children == ["baton.model researcher", "baton.tool kb_search"]
    (summarizer,) = [s for s in hops if s["name"] == "baton.hop summarizer"]
    assert by_id[summarizer["parent_span_id"]]["name"] == "baton.hop researcher"  # the part that completed the join


class _Collector(ThreadingHTTPServer):
    """A minimal OTLP/HTTP trace receiver: keeps every exported span (protobuf) as a dict."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Receive)
        self.spans: list[dict[str, Any]] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Receive(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 - the http.server hook's name
        req = ExportTraceServiceRequest()
        req.ParseFromString(self.rfile.read(int(self.headers["Content-Length"])))
        assert isinstance(self.server, _Collector) and self.path == "/v1/traces"
        for rs in req.resource_spans:
            service = {a.key: a.value.string_value for a in rs.resource.attributes}.get("service.name", "")
            for ss in rs.scope_spans:
                self.server.spans.extend({"name": sp.name, "trace_id": sp.trace_id.hex(), "span_id": sp.span_id.hex(),
                                          "parent_span_id": sp.parent_span_id.hex(), "service": service}
                                         for sp in ss.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the http.server hook's signature
        pass


@pytest.fixture
def collector() -> Iterator[_Collector]:
    server = _Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_hop_spans_are_exported_over_otlp_when_the_endpoint_is_set(
    client: redis.Redis, keys: Keys, workers: Workers, collector: _Collector
) -> None:
    _untraced(workers.env)
    workers.spawn("planner", env={**ECHO, "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint,
                                  "OTEL_BSP_SCHEDULE_DELAY": "100"})
    workers.wait_ready(client)
    tracer, _ = _caller()
    with tracer.start_as_current_span("caller") as caller:
        run_id = submit(client, keys, new_task(SEED, "Over OTLP.", Settings()))
    ctx = caller.get_span_context()
    spans = wait_for(lambda: collector.spans if len(collector.spans) >= 2 else None, 30, "spans at the collector",
                     logs=workers.logs)
    by_name = {s["name"]: s for s in spans}
    hop, model = by_name["baton.hop planner"], by_name["baton.model planner"]
    assert hop["trace_id"] == f"{ctx.trace_id:032x}" and hop["parent_span_id"] == f"{ctx.span_id:016x}"
    assert model["parent_span_id"] == hop["span_id"] and hop["service"] == "baton-worker"
    assert get_run(client, keys, run_id)["role"] == "researcher"  # type: ignore[index]


def test_untraced_workers_record_nothing_and_pass_the_callers_traceparent_through(
    client: redis.Redis, keys: Keys, workers: Workers
) -> None:
    _untraced(workers.env)
    for role in ("planner", "researcher", "summarizer"):
        workers.spawn(role, env=ECHO)
    workers.wait_ready(client)
    assert current_traceparent() == ""
    plain = submit(client, keys, new_task(SEED, "No caller span.", Settings()))
    tracer, _ = _caller()
    with tracer.start_as_current_span("caller"):
        traced_task = new_task(SEED, "A caller span.", Settings())
    traced = submit(client, keys, traced_task)
    recs = wait_runs(client, keys, [plain, traced])
    assert all(r["status"] == "done" for r in recs.values()), workers.logs()
    assert "trace_id" not in recs[plain]
    for role in ("planner", "researcher", "summarizer"):
        carried = {t.run_id: t.traceparent for t in _tasks(client, keys, "seed", role)}
        # no worker opened a span: the empty one stays empty, the caller's passes through unchanged
        assert carried == {plain: "", traced: traced_task.traceparent}


def test_tracing_is_off_and_the_sdk_not_loaded_without_configuration() -> None:
    script = (
        "import sys\n"
        "from baton.agents.runtime import tracing, worker\n"
        "from baton.protocol import Task\n"
        "assert tracing.configure('baton-worker') is False\n"
        "t = Task(run_id='r', role='planner', task='x')\n"
        "span = tracing.start_hop(t, 'planner', 'Alice', 'c')\n"
        "assert span is None and tracing.tracer() is None\n"
        "assert tracing.hop_fields(span, t) == {'traceparent': '', 'tracestate': ''}\n"
        "assert tracing.traced_model_call([span], lambda: [], model='echo', role='planner') == []\n"
        "assert not [m for m in sys.modules if m.startswith('opentelemetry.sdk.trace')], 'SDK imported'\n"
        "print('off')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "BATON_"))}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0 and out.stdout.strip() == "off", out.stderr


def test_dashboard_submit_carries_the_requests_traceparent(redis_url: str, client: redis.Redis, keys: Keys) -> None:
    from fastapi.testclient import TestClient

    from baton.agents.ops.dashboard import create_app

    header = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    with TestClient(create_app(Settings(redis_url=redis_url), SEED, interval=60), base_url="http://localhost") as http:
        traced = http.post("/v1/runs", json={"task": "traced"}, headers={"traceparent": header}).json()["run_id"]
        plain = http.post("/v1/runs", json={"task": "plain"}).json()["run_id"]
    carried = {t.run_id: t.traceparent for t in _tasks(client, keys, "seed", "planner")}
    assert carried == {traced: header, plain: ""}
    assert get_run(client, keys, traced)["trace_id"] == "0af7651916cd43dd8448eb211c80319c"  # type: ignore[index]


def test_traceparent_is_validated_and_taken_from_http_headers() -> None:
    good = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
    assert fields_from_headers({"traceparent": good, "tracestate": "k=v"}) == {"traceparent": good,
                                                                               "tracestate": "k=v"}
    assert fields_from_headers({"traceparent": "garbage"}) == {"traceparent": "", "tracestate": ""}
    assert fields_from_headers({}) == {"traceparent": "", "tracestate": ""}
    bad = Task(run_id="r", role="planner", task="x", traceparent="not-a-traceparent")
    from baton.protocol import encode

    try:
        decode(encode(bad))
    except ProtocolError as exc:
        assert "traceparent" in str(exc)
    else:
        raise AssertionError("a malformed traceparent was accepted")
