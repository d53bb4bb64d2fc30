"""Every Redis key and group name baton uses, under one configurable prefix.

Keys that one handoff touches (the role streams, the run record, the scratchpads, the
idempotency markers, the event log, the cancellation set, the dead-letter and result streams)
share a Redis Cluster hash tag: the run's partition. A run id maps to a partition by CRC32, so the
atomic commit of a handoff is a single-slot operation.

The tag of each partition is chosen so that a cluster's primaries hold the partitions evenly
(``broker/hashtags.py``). How long what the keys hold is kept travels with them
(``broker/retention.py``).

Task streams are per workflow: ``<prefix>:{p<N>}:wf:<workflow>:stream:<role>``, so any number of
workflows share one Redis (and role names) without taking each other's tasks. Workflow and role
names are key-safe (``protocol/fields.py``): they hold no ``:``, and a stream key parses back.

Each role has one stream per priority lane (``protocol.PRIORITIES``): the ``interactive`` lane is
the key above, the ``batch`` lane its sibling ``<prefix>:{p<N>}:wf:<workflow>:lane:batch:stream:<role>``
in the same hash tag (a read over one partition's lanes is a single-slot command). A run of a tenant
has its own streams beside those, ``...:wf:<workflow>:[lane:batch:]t:<tenant>:stream:<role>``, listed per
partition in ``Keys.tenant_set`` (fair dispatch across tenants: ``broker/fairshare.py``).
"""

from __future__ import annotations

import hashlib
import re
import zlib
from collections.abc import Iterable
from dataclasses import dataclass, field

from ..protocol import new_id
from ..protocol.fields import PRIORITIES, Priority
from .hashtags import partition_tags
from .retention import Retention

__all__ = ["DEFAULT_LANE", "Keys", "StreamName"]

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
DEFAULT_LANE: Priority = "interactive"
"""The lane whose stream keys carry no lane part (the keys baton had before lanes)."""

_STREAM = re.compile(r"^(?P<prefix>.+):\{p(?P<partition>\d+)(?:\.\d+)?\}:wf:(?P<workflow>[^:]+):"
                     r"(?:lane:(?P<lane>[^:]+):)?(?:t:(?P<tenant>[^:]+):)?stream:(?P<role>[^:]+)$")


@dataclass(frozen=True, slots=True)
class StreamName:
    """What a task stream key says: its workflow, role, partition, priority lane and tenant."""

    workflow: str
    role: str
    partition: int
    lane: Priority = DEFAULT_LANE
    tenant: str = ""


@dataclass(frozen=True, slots=True)
class Keys:
    """Key names for one deployment (``prefix``) split into ``partitions`` hash-tag slots, and how
    long what they hold is kept (``retention``)."""

    prefix: str = "baton"
    partitions: int = 1
    retention: Retention = field(default=Retention(), compare=False)
    """How long the keys' contents are kept (TTLs and stream lengths)."""
    _tags: tuple[str, ...] = field(init=False, repr=False, compare=False)
    _stems: tuple[str, ...] = field(init=False, repr=False, compare=False)
    """Each partition's key stem (``tag``), built once: every key of a hop starts with one."""

    def __post_init__(self) -> None:
        if self.partitions < 1:
            raise ValueError("partitions must be >= 1")
        if not self.prefix or any(c in self.prefix for c in "{}* \n"):
            raise ValueError(f"invalid key prefix {self.prefix!r}")
        object.__setattr__(self, "_tags", partition_tags(self.partitions))
        object.__setattr__(self, "_stems", tuple(f"{self.prefix}:{{{t}}}" for t in self._tags))

    def partition(self, run_id: str) -> int:
        """The partition a run lives in."""
        if self.partitions == 1:
            return 0
        return zlib.crc32(run_id.encode()) % self.partitions

    def run_id_in(self, partition: int) -> str:
        """A fresh run id that lives in ``partition`` (a run kept in one slot with its thread or key)."""
        while True:
            run_id = new_id()
            if self.partition(run_id) == partition:
                return run_id

    def by_partition(self, run_ids: Iterable[str]) -> dict[int, list[str]]:
        """``run_ids`` (without duplicates) grouped by partition, for one command per hash slot."""
        groups: dict[int, list[str]] = {}
        for run_id in dict.fromkeys(run_ids):
            groups.setdefault(self.partition(run_id), []).append(run_id)
        return groups

    def tag(self, partition: int) -> str:
        """The key stem of one partition, hash tag included."""
        if not 0 <= partition < self.partitions:
            raise ValueError(f"partition {partition} is out of range 0..{self.partitions - 1}")
        return self._stems[partition]

    def _run_tag(self, run_id: str) -> str:
        return self._stems[self.partition(run_id)]

    # streams -------------------------------------------------------------
    def stream(self, workflow: str, role: str, partition: int = 0, lane: Priority = DEFAULT_LANE,
               tenant: str = "") -> str:
        """The task stream of ``role`` of ``workflow`` in ``partition``, priority ``lane`` and ``tenant``."""
        infix = ("" if lane == DEFAULT_LANE else f"lane:{lane}:") + (f"t:{tenant}:" if tenant else "")
        return f"{self.tag(partition)}:wf:{workflow}:{infix}stream:{role}"

    def run_stream(self, workflow: str, role: str, run_id: str, lane: Priority = DEFAULT_LANE,
                   tenant: str = "") -> str:
        """The task stream of ``role`` of ``workflow`` in the partition of ``run_id``, in ``lane``, of ``tenant``."""
        return self.stream(workflow, role, self.partition(run_id), lane, tenant)

    def lane_streams(self, workflow: str, role: str, partition: int = 0, tenant: str = "") -> list[str]:
        """The task streams of ``role`` of ``workflow`` (of ``tenant``) in one partition, one per lane,
        most urgent first."""
        return [self.stream(workflow, role, partition, lane, tenant) for lane in PRIORITIES]

    def streams(self, workflow: str, role: str, partitions: Iterable[int] | None = None) -> list[str]:
        """The task streams of ``role`` of ``workflow``: every lane of every partition (or of
        ``partitions``), by partition."""
        chosen = range(self.partitions) if partitions is None else partitions
        return [s for p in chosen for s in self.lane_streams(workflow, role, p)]

    def stream_pattern(self, workflow: str = "*", role: str = "*") -> str:
        """Glob (for SCAN and ACL rules) matching the task streams of ``role`` of ``workflow`` in every
        partition and lane; the default ``*`` matches any workflow or role."""
        return f"{self.prefix}:{{p*}}:wf:{workflow}:*stream:{role}"

    def parse_stream(self, key: str) -> StreamName | None:
        """The workflow, role, partition and lane of a task stream key of this prefix; None otherwise."""
        m = _STREAM.match(key)
        if m is None or m["prefix"] != self.prefix:
            return None
        lane = m["lane"] or DEFAULT_LANE
        if lane == DEFAULT_LANE and m["lane"] or lane not in PRIORITIES:
            return None
        return StreamName(m["workflow"], m["role"], int(m["partition"]), lane, m["tenant"] or "")

    def pattern(self) -> str:
        """SCAN pattern matching every key of this prefix."""
        return f"{self.prefix}:*"

    def kind(self, key: str) -> str:
        """What kind of key ``key`` (of this prefix) is: its name after the partition's hash tag
        (``run``, ``events``, ``pad``, ``wf``...), or after the prefix for a key outside the
        partitions (``hb``, ``workflows``...); ``?`` for a key of another prefix."""
        head, sep, rest = key.partition(":")
        if head != self.prefix or not sep:
            return "?"
        parts = rest.split(":")
        return parts[1] if len(parts) > 1 and parts[0].startswith("{") else parts[0]

    def group(self, role: str) -> str:
        """The consumer group name of ``role`` (the same on every partition's stream)."""
        return role

    def waits(self, workflow: str, role: str, partition: int = 0) -> str:
        """Hash of the deliveries of ``role``'s entries in ``partition`` that a worker spent waiting (on
        a model outage, a rate limit, an open breaker) rather than running them (``broker/waits.py``)."""
        return f"{self.tag(partition)}:wf:{workflow}:waits:{role}"

    def dead(self, partition: int = 0) -> str:
        """The dead-letter stream of a partition."""
        return f"{self.tag(partition)}:dead"

    def results(self, partition: int = 0) -> str:
        """The stream where finished runs announce their result."""
        return f"{self.tag(partition)}:results"

    # run state -----------------------------------------------------------
    def run(self, run_id: str) -> str:
        """The run record hash."""
        return f"{self._run_tag(run_id)}:run:{run_id}"

    def replica_probe(self, run_id: str) -> str:
        """A short-lived key in the slot of ``run_id``'s record that a submit writes before ``WAIT``."""
        return f"{self._run_tag(run_id)}:replica-probe"

    def runs(self, partition: int = 0) -> str:
        """Sorted set of run ids by creation time."""
        return f"{self.tag(partition)}:runs"

    def pad(self, run_id: str, agent: str) -> str:
        """The scratchpad hash of ``agent`` in ``run_id``: one field per entry."""
        return f"{self._run_tag(run_id)}:pad:{run_id}:{agent}"

    def pads(self, run_id: str) -> str:
        """Sorted set of the agents that wrote a scratchpad in ``run_id`` (by first write)."""
        return f"{self._run_tag(run_id)}:pads:{run_id}"

    def agent_pad(self, agent: str) -> str:
        """An agent's long-term scratchpad across runs (only for workflows that ask for it)."""
        return f"{self.prefix}:agentpad:{agent}"

    def memory(self, run_id: str) -> str:
        """The shared memory hash of one run."""
        return f"{self._run_tag(run_id)}:mem:{run_id}"

    def join(self, run_id: str, group: str) -> str:
        """The fan-in hash collecting the parts of ``group`` in ``run_id``."""
        return f"{self._run_tag(run_id)}:join:{run_id}:{group}"

    def done(self, run_id: str, msg_id: str) -> str:
        """Idempotency marker: set once the handoff of message ``msg_id`` has committed."""
        return f"{self._run_tag(run_id)}:done:{msg_id}"

    def journal(self, run_id: str, msg_id: str) -> str:
        """The journal of message ``msg_id`` of ``run_id``: one field per call sequence number, each a
        code role's recorded call result (``broker/journal.py``)."""
        return f"{self._run_tag(run_id)}:journal:{run_id}:{msg_id}"

    def journal_hops(self, run_id: str) -> str:
        """Hash of ``role:hop:part`` -> the message id whose journal that hop wrote, in ``run_id``
        (what fork and replay reuse a source run's journal by)."""
        return f"{self._run_tag(run_id)}:journals:{run_id}"

    def events(self, run_id: str) -> str:
        """The event log of ``run_id``: a stream of ``ev`` entries (``broker/events.py``)."""
        return f"{self._run_tag(run_id)}:events:{run_id}"

    def review(self, run_id: str, review_id: str) -> str:
        """The hash of one human review of a role's output in ``run_id``."""
        return f"{self._run_tag(run_id)}:review:{run_id}:{review_id}"

    def reviews(self, partition: int = 0) -> str:
        """Sorted set of the partition's pending review ids, by the time they were requested."""
        return f"{self.tag(partition)}:reviews"

    def review_runs(self, partition: int = 0) -> str:
        """Hash of the partition's review ids -> their run id (to find a review by its id alone)."""
        return f"{self.tag(partition)}:reviewruns"

    def timer(self, run_id: str, msg_id: str) -> str:
        """The hash of a code role's parked task ``msg_id`` of ``run_id``: what it sleeps or waits for
        (``broker/timers.py``)."""
        return f"{self._run_tag(run_id)}:timer:{run_id}:{msg_id}"

    def timers(self, workflow: str, role: str, partition: int = 0) -> str:
        """Sorted set of the parked tasks (``run_id msg_id``) of ``role`` of ``workflow`` in a partition, by
        the time they are due (their timer, timeout or deadline; ``+inf`` for none)."""
        return f"{self.tag(partition)}:due:{workflow}:{role}"

    def run_timers(self, run_id: str) -> str:
        """Hash of the parked task ids of ``run_id`` -> the signal name each waits for (empty: a sleep)."""
        return f"{self._run_tag(run_id)}:parked:{run_id}"

    def signals(self, run_id: str, name: str) -> str:
        """The list of signals ``name`` of ``run_id`` that no wait has taken yet (oldest first)."""
        return f"{self._run_tag(run_id)}:signal:{run_id}:{name}"

    def placeholder(self, partition: int) -> str:
        """A key in the partition's slot that is never written (for unused script keys)."""
        return f"{self.tag(partition)}:-"

    def workflows(self) -> str:
        """Hash of workflow name -> its spec as JSON, registered by workers of apps (``broker/workflows.py``)."""
        return f"{self.prefix}:workflows"

    def idempotency(self, key: str, partition: int) -> str:
        """A caller's idempotency key of a submit -> the run id it started (``broker/idempotency.py``),
        in the slot of that run's ``partition`` (written with the run); hashed, since the key is the
        caller's text."""
        return f"{self.tag(partition)}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    def legacy_idempotency(self, key: str) -> str:
        """Where versions before keys lived in their run's slot stored an idempotency key (read only)."""
        return f"{self.prefix}:idem:{hashlib.sha256(key.encode()).hexdigest()}"

    # threads -------------------------------------------------------------
    def thread_partition(self, thread_id: str) -> int:
        """The partition of a thread: its keys and every run of it live there (``broker/threads.py``)."""
        return self.partition(thread_id)

    def thread(self, thread_id: str) -> str:
        """A thread's state hash (its running turn, times); ``:turns`` (finished turns) and ``:queue``
        (waiting turns) are lists beside it, named by appending, as ``lua/library.lua`` does."""
        return f"{self.tag(self.thread_partition(thread_id))}:thread:{thread_id}"

    def thread_turns(self, thread_id: str) -> str:
        """The list of a thread's finished turns (JSON ``protocol.Turn``), oldest first."""
        return f"{self.thread(thread_id)}:turns"

    def thread_queue(self, thread_id: str) -> str:
        """The list of a thread's waiting turns (run id, task stream and task), first to start first."""
        return f"{self.thread(thread_id)}:queue"

    def threads(self, partition: int = 0) -> str:
        """Sorted set of the partition's thread ids by their last write."""
        return f"{self.tag(partition)}:threads"

    # schedules -----------------------------------------------------------
    def schedules(self) -> str:
        """Hash of schedule name -> its spec as JSON (``broker/schedules.py``)."""
        return f"{self.prefix}:schedules"

    def schedule_state(self, name: str) -> str:
        """Hash of one schedule's firing state: its last tick, its last run, a buffered tick."""
        return f"{self.prefix}:schedule:{name}"

    # workers -------------------------------------------------------------
    def heartbeat(self, consumer: str) -> str:
        """A worker's liveness key, refreshed while it runs and expiring when it dies."""
        return f"{self.prefix}:hb:{consumer}"

    def heartbeat_pattern(self) -> str:
        """SCAN pattern matching every heartbeat key."""
        return f"{self.prefix}:hb:*"

    def cancelled(self, partition: int = 0) -> str:
        """Set of the partition's cancelled run ids."""
        return f"{self.tag(partition)}:cancelled"

    def run_cancelled(self, run_id: str) -> str:
        """The cancellation set of the partition of ``run_id``."""
        return self.cancelled(self.partition(run_id))

    def tool_stream(self, tool: str, partition: int = 0) -> str:
        """The call stream of a tool worker pool."""
        return f"{self.tag(partition)}:tools:{tool}"

    def tool_replies(self, run_id: str, call_id: str) -> str:
        """A list the caller blocks on for one tool result."""
        return f"{self._run_tag(run_id)}:toolreply:{call_id}"

    # tenants -------------------------------------------------------------
    def tenant_runs(self, tenant: str, partition: int = 0) -> str:
        """Sorted set of one tenant's run ids in the partition, by creation time (``broker/tenants.py``)."""
        return f"{self.tag(partition)}:truns:{tenant}"

    def tenant_set(self, partition: int = 0) -> str:
        """Set of the tenants that submitted runs in the partition: whose task streams workers read."""
        return f"{self.tag(partition)}:tenantset"

    def tenant_caps(self, partition: int = 0) -> str:
        """Hash of tenant -> the most runs it may run at once in the partition (its ``max_running`` share)."""
        return f"{self.tag(partition)}:tcaps"

    def tenant_running(self, tenant: str, partition: int = 0) -> str:
        """Set of a capped tenant's running runs in the partition (``lua/tenant_admit.lua``)."""
        return f"{self.tag(partition)}:trun:{tenant}"

    def tenant_queue(self, tenant: str, partition: int = 0) -> str:
        """List of a capped tenant's runs waiting for one of its running runs to end, oldest first."""
        return f"{self.tag(partition)}:tqueue:{tenant}"

    def tenants(self) -> str:
        """Hash of tenant name -> its limits as JSON (``protocol.TenantLimits``), published from the tenants file."""
        return f"{self.prefix}:tenants"

    def tenant_usage(self, tenant: str, window_s: int, window: int) -> str:
        """Tokens a tenant's model calls generated in quota window number ``window`` of ``window_s`` seconds."""
        return f"{self.prefix}:tusage:{tenant}:{window_s}:{window}"

    def audit(self) -> str:
        """The audit stream: one entry per state-changing API call (``broker/audit.py``)."""
        return f"{self.prefix}:audit"

    # shared limits -------------------------------------------------------
    def rate_limit(self, model: str) -> str:
        """The rate-limit state of one model endpoint, shared by every worker that calls it
        (``broker/ratelimit.py``): a short hash of the model name plus a sanitized tail of it,
        since model names hold ``/`` and ``:`` (paths, URLs)."""
        digest = hashlib.sha1(model.encode()).hexdigest()[:12]
        tail = _UNSAFE.sub("_", model)[-40:].strip("_") or "model"
        return f"{self.prefix}:rl:{tail}:{digest}"

    def rate_limit_pattern(self) -> str:
        """SCAN pattern matching every model's rate-limit key."""
        return f"{self.prefix}:rl:*"
