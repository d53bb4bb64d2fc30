"""Baton's broker: Redis Streams, consumer groups, the atomic handoff, run records, scratchpads.

This package is the only one that talks to Redis.
"""

from baton.broker.commit import Handoff, Outcome, commit
from baton.broker.connection import BrokerUnavailable, connect, describe_url, ping
from baton.broker.embedded import EmbeddedRedis, find_redis_server, free_port
from baton.broker.keys import Keys
from baton.broker.runs import (
    RunView,
    agents_in_run,
    cancelled_and_scratchpads,
    get_run,
    latest_run,
    list_runs,
    scratchpad,
    scratchpads,
    submit,
    wait_for_runs,
)
from baton.broker.streams import Entry, RoleStreams, ensure_group, entry_id_key

__all__ = [
    "BrokerUnavailable",
    "EmbeddedRedis",
    "Entry",
    "Handoff",
    "Keys",
    "Outcome",
    "RoleStreams",
    "RunView",
    "agents_in_run",
    "cancelled_and_scratchpads",
    "commit",
    "connect",
    "describe_url",
    "ensure_group",
    "entry_id_key",
    "find_redis_server",
    "free_port",
    "get_run",
    "latest_run",
    "list_runs",
    "ping",
    "scratchpad",
    "scratchpads",
    "submit",
    "wait_for_runs",
]
