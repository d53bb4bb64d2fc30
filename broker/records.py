"""What runs and workers leave in Redis, decoded once at the broker boundary into msgspec Structs.

A run record is a hash of strings; :func:`decode_run` turns it into a :class:`RunRecord` whose
fields are typed (``status`` a ``RunStatus``, times floats, ``hops`` an int) and which keeps every
stored field in ``fields`` (per-role and per-model counters, fork labels: what views show and
``usage`` reads). A worker's heartbeat is a :class:`Heartbeat` encoded as JSON. Code above the
broker reads attributes, never ``record.get("status")``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import msgspec
import redis

from ..protocol import TERMINAL_STATUSES, Priority, RunStatus
from .budget import Usage, usage
from .keys import Keys
from .lenient import decode_hash
from .text import as_text

__all__ = ["Heartbeat", "RunRecord", "decode_heartbeat", "decode_run", "encode_heartbeat", "run_metadata", "runs_over",
           "status_ended"]

class RunRecord(msgspec.Struct, frozen=True, kw_only=True):
    """One run as its record says: where it stands, what it was given and what it produced."""

    run_id: str
    status: RunStatus = RunStatus.QUEUED
    workflow: str = ""
    task: str = ""
    role: str = ""
    """The role holding the run now (the last one, once it ended)."""
    priority: Priority = "interactive"
    created_at: float = 0.0
    updated_at: float = 0.0
    finished_at: float | None = None
    hops: int = 0
    result: str = ""
    error: str = ""
    trace_id: str = ""
    review: str = ""
    """The id of the run's latest review, if a role's output waited for one."""
    tenant: str = ""
    """The tenant the run belongs to (empty: none, which only an admin sees over the API)."""
    fields: dict[str, str] = msgspec.field(default_factory=dict)
    """Every field as stored (strings), for views that show them all."""

    @property
    def ended(self) -> bool:
        """Whether the run has ended (nothing will change its status again)."""
        return self.status in TERMINAL_STATUSES

    @property
    def metadata(self) -> dict[str, str]:
        """The labels the run was submitted with."""
        return run_metadata(self.fields)

    @property
    def usage(self) -> Usage:
        """Tokens, model calls and tool calls in total, by role and (tokens) by model, and the budget."""
        return usage(self.fields)

    @property
    def tokens(self) -> int:
        """Tokens the run's model calls generated so far."""
        return self.usage.tokens

    @property
    def model_calls(self) -> int:
        """Model calls (one per prompt) the run made so far."""
        return self.usage.model_calls

    @property
    def tool_calls(self) -> int:
        """Tool calls the run made so far."""
        return self.usage.tool_calls


def decode_run(run_id: str, raw: Mapping[Any, Any]) -> RunRecord | None:
    """The record of ``run_id`` from its hash (bytes or strings); None for an empty hash (no run).

    A field that does not convert (a record written by hand) keeps its default; ``fields`` has it.
    """
    if not raw:
        return None
    return decode_hash(raw, RunRecord, {"run_id": run_id, "fields": {as_text(k): as_text(v) for k, v in raw.items()}})


def status_ended(status: bytes | str | None) -> bool:
    """Whether a run record's stored ``status`` (None: no record, it expired) says the run is over."""
    return status is None or as_text(status) in TERMINAL_STATUSES


def runs_over(client: redis.Redis, keys: Keys, run_ids: Sequence[str]) -> list[bool]:
    """For each of ``run_ids``, whether its run has ended or its record expired (one pipelined round
    trip): what the sweeps of reviews, waits, threads and tenants' caps ask before they let go."""
    if not run_ids:
        return []
    pipe = client.pipeline(transaction=False)
    for run_id in run_ids:
        pipe.hget(keys.run(run_id), "status")
    return [status_ended(s) for s in pipe.execute()]


_decode_metadata = msgspec.json.Decoder(dict[str, str]).decode


def run_metadata(record: Mapping[str, str]) -> dict[str, str]:
    """The ``metadata`` a run was submitted with, from its stored fields (empty when none or unreadable)."""
    raw = record.get("metadata")
    if not raw:
        return {}
    try:
        return _decode_metadata(raw)
    except msgspec.DecodeError:
        return {}


class Heartbeat(msgspec.Struct, frozen=True, kw_only=True):
    """What a worker says about itself every ``BATON_HEARTBEAT_INTERVAL_S`` (its key expires after
    ``BATON_HEARTBEAT_TTL_S``): who and where it is, what it did, and its model endpoint's breaker."""

    consumer: str
    role: str
    host: str = ""
    pid: int = 0
    at: float = 0.0
    """When it was written (0: unknown, so never fresh for ``check_worker``)."""
    processed: int = 0
    metrics_port: int | None = None
    torch_threads: int | None = None
    breaker: str = ""
    model_down_since: float | None = None
    outage_s: float = 0.0
    tools: list[str] = msgspec.field(default_factory=list)
    """The tools a tool worker serves (empty for a role's worker)."""
    roles: list[str] = msgspec.field(default_factory=list)
    """The roles a multi-role worker serves."""


_heartbeat_encoder = msgspec.json.Encoder()
_heartbeat_decoder = msgspec.json.Decoder(Heartbeat)


def encode_heartbeat(beat: Heartbeat) -> bytes:
    """A heartbeat as the JSON its key holds."""
    return _heartbeat_encoder.encode(beat)


def decode_heartbeat(raw: bytes | str) -> Heartbeat | None:
    """A heartbeat from its key's JSON; None when it does not decode (a foreign or older writer)."""
    try:
        return _heartbeat_decoder.decode(raw)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None
