"""Baton's broker: Redis Streams, consumer groups, the atomic handoff, run records, scratchpads.

Of the installed package, this is the only one that talks to Redis: ``protocol/``, ``agents/``
and the public face (``agents/client/``) annotate clients as ``Redis`` and catch the error
classes exported here; they never import ``redis`` (tests/broker/test_only_broker_speaks_redis.py).
The tests and the benchmarks outside ``baton`` may use redis-py directly.
"""

from .cancel import cancel_run, cancelled
from .commit import Handoff, Outcome, commit
from .connection import BrokerUnavailable, connect, connect_async, describe_url, ping
from .consumers import ConsumerName, consumer_name, parse_consumer
from .embedded import EmbeddedRedis, find_redis_server, free_port
from .errors import (
    UNREACHABLE,
    AuthenticationFailed,
    BrokerConnectionError,
    BrokerError,
    BrokerTimeout,
    CommandRefused,
    NoPermission,
    Redis,
    is_noperm,
)
from .events import (
    EVENT_FIELD,
    AsyncRedis,
    aiter_events,
    append_batch,
    append_events,
    aread_events,
    iter_events,
    read_events,
)
from .health import check_worker, live_workers
from .keys import Keys
from .loop import ConsumerLoop, backoff_delay
from .pads import Memory, MemoryEntry, PadBatch, PadEntry, PadMeta, PadTool
from .prefetch import BeforeRun, before_run, cancelled_and_scratchpads
from .records import Heartbeat, RunRecord
from .retention import Retention
from .runs import (
    RunView,
    agents_in_run,
    get_run,
    latest_run,
    list_runs,
    run_metadata,
    run_record,
    run_records,
    run_scratchpads,
    scratchpad,
    scratchpads,
    submit,
    wait_for_runs,
)
from .streams import Entry, GroupStreams, ReadOptions, RoleStreams, ensure_group, entry_id_key

__all__ = [
    "EVENT_FIELD",
    "UNREACHABLE",
    "AsyncRedis",
    "AuthenticationFailed",
    "BeforeRun",
    "BrokerConnectionError",
    "BrokerError",
    "BrokerTimeout",
    "BrokerUnavailable",
    "CommandRefused",
    "ConsumerLoop",
    "ConsumerName",
    "EmbeddedRedis",
    "Entry",
    "GroupStreams",
    "Handoff",
    "Heartbeat",
    "Keys",
    "Memory",
    "MemoryEntry",
    "NoPermission",
    "Outcome",
    "PadBatch",
    "PadEntry",
    "PadMeta",
    "PadTool",
    "ReadOptions",
    "Redis",
    "Retention",
    "RoleStreams",
    "RunRecord",
    "RunView",
    "agents_in_run",
    "aiter_events",
    "append_batch",
    "append_events",
    "aread_events",
    "backoff_delay",
    "before_run",
    "cancel_run",
    "cancelled",
    "cancelled_and_scratchpads",
    "check_worker",
    "commit",
    "connect",
    "connect_async",
    "consumer_name",
    "describe_url",
    "ensure_group",
    "entry_id_key",
    "find_redis_server",
    "free_port",
    "get_run",
    "is_noperm",
    "iter_events",
    "latest_run",
    "list_runs",
    "live_workers",
    "parse_consumer",
    "ping",
    "read_events",
    "run_metadata",
    "run_record",
    "run_records",
    "run_scratchpads",
    "scratchpad",
    "scratchpads",
    "submit",
    "wait_for_runs",
]
