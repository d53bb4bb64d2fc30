"""One typed settings object built from ``REDIS_URL`` and ``BATON_*`` environment variables.

Values are converted by msgspec (``"1"``, ``"true"``, ``"30"``...), never parsed by hand.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Annotated, Literal

import msgspec

from ..broker.keys import Keys
from ..broker.lanes import DEFAULT_BATCH_SHARE
from ..broker.retention import DEFAULT_EVENTS_MAXLEN, MARKER_TTL_S, Retention
from ..broker.streams import ReadOptions
from ..protocol import MAX_HOPS
from .backends.base import DEFAULT_MAX_NEW_TOKENS, DEFAULT_MODEL

__all__ = ["DEFAULT_MODEL", "Settings", "SettingsError"]



class SettingsError(ValueError):
    """A setting has a value that cannot be used; the message names the variable."""


class Settings(msgspec.Struct, frozen=True, kw_only=True):
    """Runtime settings. Each field ``x`` reads the variable ``BATON_X`` (``redis_url``: ``REDIS_URL``)."""

    redis_url: str = "redis://localhost:6379/0"
    prefix: str = "baton"
    partitions: int = 1
    worker_partitions: str = ""  # comma-separated partitions a role worker consumes; empty: all of them
    model: str = DEFAULT_MODEL
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS
    torch_threads: int = 1
    batch_size: int = 32  # max messages per model call: per-token overhead dominates small CPU models
    linger_ms: int = 2  # a short read waits this long for more, only while work is flowing
    block_ms: int = 2000
    max_deliveries: int = 3
    batch_share: Annotated[float, msgspec.Meta(ge=0, le=1)] = DEFAULT_BATCH_SHARE  # batch lane share of read slots
    batch_lane_size: Annotated[int, msgspec.Meta(ge=0)] = 0  # most batch tasks per model call (0: batch_size)
    tenant_batch_size: Annotated[int, msgspec.Meta(ge=0)] = 0  # most tasks of one tenant per read while others are busy
    worker_reserve: Literal["", "interactive"] = ""  # interactive: serve quiet tenants' interactive runs only
    worker_nice: Annotated[int, msgspec.Meta(ge=0, le=19)] = 0  # CPU priority this much lower while serving a backlog
    lease_ms: int = 30000
    reclaim_interval_s: float = 5.0
    heartbeat_interval_s: float = 2.0
    heartbeat_ttl_s: float = 10.0
    shutdown_grace_s: float = 30.0
    max_hops: Annotated[int, msgspec.Meta(ge=1)] = MAX_HOPS  # a task's own max_hops wins
    record_ttl_s: int = 0
    janitor_interval_s: float = 60.0
    results_retention_s: int = MARKER_TTL_S
    retry_backoff_s: float = 0.5
    outage_budget_s: float = 600.0  # how long a run waits out a model or Redis outage before it fails
    breaker_threshold: int = 3  # consecutive transient model failures that open the endpoint's breaker
    breaker_cap_s: float = 4.0  # longest back-off between probes of a down endpoint (found back within it)
    api_tokens: str = ""  # comma-separated bearer tokens of the HTTP API; empty: no authentication
    tenants_file: str = ""  # TOML file of tenants: hashed tokens and limits (``agents/tenants.py``); empty: none
    tenant: str = ""  # the tenant the client and CLI submit as at the Redis level (the API takes it from the token)
    http_header_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # HTTP servers: a request's headers in time
    http_body_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 30.0  # ... and its body, else 408
    allowed_hosts: str = ""  # comma-separated Host names the dashboard answers without tokens (beyond loopback)
    model_api_keys: str = ""  # comma-separated API keys ``baton serve-model`` accepts; empty: no authentication
    log_format: str = "text"
    log_level: str = "INFO"
    workflow: str = ""
    metrics_port: int = 0
    otel_file: str = ""  # append one JSON span per line here (tests, debugging); OTLP uses the OTEL_* variables
    events_maxlen: Annotated[int, msgspec.Meta(ge=1)] = DEFAULT_EVENTS_MAXLEN  # events kept per run (approximate)
    events_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = MARKER_TTL_S  # a run's event log outlives its last write by this
    marker_ttl_s: Annotated[int, msgspec.Meta(ge=1)] = MARKER_TTL_S  # a handoff's idempotency marker is kept this long
    stream_tokens: bool = True  # write ``tokens`` events while the model generates
    token_flush_tokens: Annotated[int, msgspec.Meta(ge=1)] = 16  # a prompt's chunk is sent after this many tokens
    token_flush_ms: Annotated[int, msgspec.Meta(ge=0)] = 50  # ... or this long after the chunk began
    model_rpm: Annotated[int, msgspec.Meta(ge=0)] = 0  # prompts per minute to the model, all workers; 0 = no limit
    model_tpm: Annotated[int, msgspec.Meta(ge=0)] = 0  # tokens per minute (reserved at max_new_tokens); 0 = no limit
    model_prices: str = ""  # price per 1,000 tokens by model, "model=0.002,other=0.01" (``baton runs`` cost)
    max_backlog: Annotated[int, msgspec.Meta(ge=0)] = 0  # refuse submits while the entry role lags this much; 0: off
    wait_replicas: Annotated[int, msgspec.Meta(ge=0)] = 0  # WAIT for this many replicas after each commit (0 = off)
    wait_timeout_ms: Annotated[int, msgspec.Meta(ge=1)] = 100  # ... at most this long; fewer acks: warn, count
    # (a submit with wait_replicas waits as long, then raises ReplicasBehind: submit again with its run id)
    submit_retry_s: Annotated[float, msgspec.Meta(ge=0)] = 30.0  # a submit retries a failover this long; 0: never
    journal: bool = True  # code roles record each call's result (a redelivered hop repeats none); 0: call again
    # every worker process (not one under a named Redis user) fires the due schedule ticks too; 0: only the scheduler
    worker_schedules: bool = True
    worker_webhooks: bool = True  # every worker process (with a webhook_secret) delivers webhooks too; 0: off
    upkeep_poll_s: Annotated[float, msgspec.Meta(gt=0)] = 1.0  # seconds between upkeep passes (schedules, webhooks)
    webhook_allow: str = ""  # hosts, *.domains, IP networks or `public` webhooks may call; empty: no webhooks
    webhook_secret: str = ""  # the HMAC-SHA256 key deliveries are signed with; a process without it sends none
    webhook_retry_s: Annotated[float, msgspec.Meta(ge=0)] = 3600.0  # retry a failing delivery this long, then fail it
    webhook_timeout_s: Annotated[float, msgspec.Meta(gt=0)] = 10.0  # one attempt's connect + answer time

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: object) -> Settings:
        """Build settings from the environment, then apply explicit overrides."""
        env = os.environ if env is None else env
        raw: dict[str, object] = {}
        for name in cls.__struct_fields__:
            var = "REDIS_URL" if name == "redis_url" else f"BATON_{name.upper()}"
            if var in env and env[var] != "":
                raw[name] = env[var]
        raw.update({k: v for k, v in overrides.items() if v is not None})
        try:
            settings = msgspec.convert(raw, cls, strict=False)
        except msgspec.ValidationError as exc:
            field = str(exc).rsplit("`$.", 1)[-1].rstrip("`")
            var = "REDIS_URL" if field == "redis_url" else f"BATON_{field.upper()}"
            raise SettingsError(f"bad value for {var}: {exc}") from None
        settings.model_price_map()
        return settings

    @property
    def retention(self) -> Retention:
        """How long run records, event logs, idempotency markers and results are kept."""
        return Retention(record_ttl_s=self.record_ttl_s, events_maxlen=self.events_maxlen,
                         events_ttl_s=self.events_ttl_s, marker_ttl_s=self.marker_ttl_s,
                         results_retention_s=self.results_retention_s)

    @property
    def read_options(self) -> ReadOptions:
        """How a worker shares its reads of new work between lanes and tenants."""
        return ReadOptions(batch_share=self.batch_share, batch_count=self.batch_lane_size,
                           tenant_count=self.tenant_batch_size, reserved=self.worker_reserve == "interactive")

    def keys(self) -> Keys:
        """The deployment's key names (``prefix``, ``partitions``) with its ``retention``: what every
        broker call takes, built once per process."""
        return Keys(self.prefix, self.partitions, self.retention)

    def model_price_map(self) -> dict[str, float]:
        """``model_prices`` as ``{model: price per 1,000 tokens}``; ``SettingsError`` on a bad item."""
        prices: dict[str, float] = {}
        for item in (i.strip() for i in self.model_prices.split(",")):
            if not item:
                continue
            model, sep, price = item.rpartition("=")
            try:
                value = float(price)
            except ValueError:
                value = -1.0
            if not sep or not model.strip() or not value >= 0 or value == float("inf"):
                raise SettingsError(f"bad value for BATON_MODEL_PRICES: {item!r} is not MODEL=PRICE "
                                    "(a price per 1,000 tokens >= 0, e.g. echo=0.002)")
            prices[model.strip()] = value
        return prices

    def worker_partition_list(self) -> tuple[int, ...] | None:
        """The partitions in ``worker_partitions`` (None: every partition); SettingsError if out of range."""
        items = [p.strip() for p in self.worker_partitions.split(",") if p.strip()]
        if not items:
            return None
        if not all(p.isdigit() and int(p) < self.partitions for p in items):
            raise SettingsError(f"bad value for BATON_WORKER_PARTITIONS: {self.worker_partitions!r} is not a "
                                f"comma-separated list of partitions in 0..{self.partitions - 1}")
        return tuple(sorted({int(p) for p in items}))

    def api_token_list(self) -> tuple[str, ...]:
        """The bearer tokens in ``api_tokens`` (blank items dropped)."""
        return tuple(t.strip() for t in self.api_tokens.split(",") if t.strip())

    def allowed_host_list(self) -> tuple[str, ...]:
        """The host names in ``allowed_hosts`` (blank items dropped)."""
        return tuple(h.strip() for h in self.allowed_hosts.split(",") if h.strip())

    def model_api_key_list(self) -> tuple[str, ...]:
        """The API keys in ``model_api_keys`` (blank items dropped)."""
        return tuple(k.strip() for k in self.model_api_keys.split(",") if k.strip())
