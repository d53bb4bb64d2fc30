"""Least-privilege Redis ACL rules for one role's workers (of one workflow).

A worker of role R of workflow W needs, and gets, only:

- commands: the stream commands of a consumer (XREADGROUP, XACK, XCLAIM, XAUTOCLAIM, XPENDING,
  XINFO GROUPS/CONSUMERS, XGROUP CREATE/DELCONSUMER, XADD, XTRIM), the hash, set and string
  commands of the handoff and the run record, FCALL of baton's Functions library for the atomic
  steps (``broker/scripts.py``; loading code, SCRIPT LOAD, EVAL and FUNCTION LOAD, stays with the admin
  who runs ``baton setup``), PING;
- keys: its own task streams and the next roles' task streams, all of workflow W (read-write: the commit
  function names them as keys, and FCALL declares its keys read-write), its own role's record of
  deliveries spent waiting (``Keys.waits``), run
  records, scratchpads, idempotency markers, the results and dead-letter streams of every
  partition, the runs index, the threads (a run's end releases its thread and starts the thread's
  next turn: give a role that ends runs its workflow's entry role among ``next_roles``), heartbeats
  (write only its own role's), the cancelled-runs set (read, and write to forget expired entries);
  with ``review``, the review hashes and indexes (parking, reading a decision, its janitor failing
  reviews past their deadline); with ``code`` (a code role: a Python handler), its runs' call journals
  (``ctx.step``, ``ctx.generate``...), their parked waits and signal buffers and its own role's due
  index of durable timers (``ctx.sleep``, ``ctx.wait_for``: ``CODE_KEYS``); with ``rate_limits``, the
  models' shared rate-limit hashes (``Keys.rate_limit``) and the commands their script calls.

Everything else, other roles' and other workflows' streams, a role without review's review keys,
FLUSHALL, CONFIG, KEYS, is refused
with NOPERM and shows up in ``ACL LOG``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .keys import Keys

__all__ = ["CLUSTER_COMMANDS", "CODE_COMMANDS", "CODE_KEYS", "FEATURE_COMMANDS", "FEATURE_KEYS",
           "RATE_LIMIT_COMMANDS", "REVIEW_KEYS", "SCRIPT_COMMANDS", "TENANT_COMMANDS", "WORKER_COMMANDS", "RoleNeeds",
           "role_acl"]

WORKER_COMMANDS = (
    "ping",
    "xreadgroup", "xack", "xclaim", "xautoclaim", "xpending", "xinfo|groups", "xinfo|consumers",
    "xgroup|create", "xgroup|delconsumer", "xadd", "xtrim", "xrange", "xlen",
    "hset", "hsetnx", "hget", "hmget", "hgetall", "hlen", "hdel", "hincrby", "expire", "exists", "get", "set", "del",
    "zadd", "zrange", "zrangebyscore", "zrem", "smismember", "sismember", "sscan", "srem",
    "rpush", "lpop", "lrange", "fcall", "smembers", "sadd", "scard", "llen",
)
"""Commands a worker issues (including its janitor sweep and the commit and budget scripts' calls).

On Redis 7.2 and later also grant ``client|setinfo`` (redis-py announces its name on connect;
7.0 does not know the command, so it cannot be named in a 7.0 ACL).
"""


FEATURE_KEYS: dict[str, tuple[str, ...]] = {
    "shared_memory": ("mem:*",),
    "join": ("join:*",),
    "tools": ("tools:*", "toolreply:*"),
}
"""Extra key patterns (in the partition's slot) for workflow features a role uses."""

CLUSTER_COMMANDS = ("cluster|slots", "cluster|shards", "command", "readonly")
"""What a Redis Cluster client adds: the slot map and the command table, read on connect."""

FEATURE_COMMANDS: dict[str, tuple[str, ...]] = {
    "tools": ("blpop", "lpush"),
    "shared_memory": ("multi", "exec", "discard"),
}
"""Extra commands for workflow features: a remote tool call waits on its reply list; shared
memory writes are a MULTI/EXEC transaction."""

SCRIPT_COMMANDS = ("evalsha", "script|load", "script|exists")
"""What a role needs on a server without Functions (Redis < 7), where the steps run as scripts.
With them the role can run any Lua of its own (and block the server with it): grant them only there."""

CODE_KEYS = ("journal:*", "journals:*", "timer:*", "parked:*", "signal:*")
"""Key patterns (in the partition's slot) of code roles: call journals (``broker/journal.py``) and
durable waits (``broker/timers.py``); the role's own due index is granted beside them."""

CODE_COMMANDS = ("llen", "zscore")
"""What the wait step (``lua/wait.lua``) calls beyond the worker's own commands."""

REVIEW_KEYS = ("review:*", "reviews", "reviewruns")
"""Key patterns (in the partition's slot) of human reviews: granted only to reviewed roles."""

TENANT_COMMANDS = ("incrby", "hincrby", "time")
"""Commands a worker issues for its tenants' quotas and per-minute limits (``broker/tenants.py``,
``lua/ratelimit.lua``)."""

RATE_LIMIT_COMMANDS = ("hincrby", "time")
"""Commands ``lua/ratelimit.lua`` calls beyond the worker's own (the script runs as the worker's user)."""


@dataclass(frozen=True, slots=True)
class RoleNeeds:
    """What one role's workers touch beyond every worker's own keys and commands (``role_acl``).
    The defaults are a role that hands off to nobody and uses no optional feature."""

    next_roles: tuple[str, ...] = ()
    """The roles this role hands off to (routes included; a role that ends runs: its workflow's
    entry role too, for a thread's next turn)."""
    features: tuple[str, ...] = ()
    """Entries of ``FEATURE_KEYS`` the role needs (shared memory, joins, tools)."""
    agent_memory: tuple[str, ...] = ()
    """Agents whose long-term scratchpad the role keeps."""
    rate_limits: bool = False
    """The role's model has a shared rate limit (``BATON_MODEL_RPM``/``TPM``, role ``rpm``/``tpm``)."""
    review: bool = False
    """The role has ``review = "human"`` (only such roles, and their workers' janitors, touch ``REVIEW_KEYS``)."""
    code: bool = False
    """The role is a code role (``CODE_KEYS``, ``CODE_COMMANDS`` and its due index)."""
    tenant: str = ""
    """The workers serve that tenant's runs (``*``: every tenant's; ``""``: no tenant's)."""


def role_acl(keys: Keys, workflow: str, role: str, needs: RoleNeeds = RoleNeeds(), *, user: str | None = None,
             password: str | None = None, cluster: bool = False, scripts: bool = False) -> list[str]:
    """The ``ACL SETUSER`` arguments (user name first) for the workers of ``role`` of ``workflow``.

    The user is ``baton-<workflow>-<role>`` unless ``user`` is given. ``needs`` says what the role
    touches beyond every worker's keys and commands (``RoleNeeds``): the roles it hands off to, its
    workflow features and agents' long-term scratchpads (the seed roles need neither), a shared
    model rate limit, human review, a code role's journals and waits, a tenant.
    ``cluster`` adds what a Redis Cluster client reads on connect (set the user on every node).
    ``scripts`` adds ``SCRIPT_COMMANDS`` for a server without Functions (Redis < 7).
    With ``needs.tenant`` the user is ``baton-<tenant>-<workflow>-<role>`` (``baton-<workflow>-<role>``
    for ``*``) and may read the published tenant limits and count the tenant's tokens and rate limits
    (``TENANT_COMMANDS``), only that tenant's. A worker whose user lacks them fails its tenant tasks'
    quota checks with NOPERM.
    """
    features, tenant = needs.features, needs.tenant
    unknown = set(features) - FEATURE_KEYS.keys()
    if unknown:
        raise ValueError(f"unknown ACL features {sorted(unknown)}; known: {sorted(FEATURE_KEYS)}")
    tag = f"{keys.prefix}:{{p*}}"
    named = f"baton-{tenant}-{workflow}-{role}" if tenant and tenant != "*" else f"baton-{workflow}-{role}"
    rules = [user or named, "reset", "on", f">{password}" if password else "nopass",
             "resetchannels", "-@all", *(f"+{c}" for c in WORKER_COMMANDS),
             f"~{keys.stream_pattern(workflow, role)}"]
    # FCALL declares its keys read-write, so the next roles' streams cannot be write-only (%W~)
    rules += [f"~{keys.stream_pattern(workflow, nxt)}" for nxt in needs.next_roles]
    rules += [f"~{tag}:wf:{workflow}:waits:{role}"]  # its deliveries spent waiting (broker/waits.py)
    rules += [f"~{tag}:{k}" for k in ("results", "dead", "runs", "run:*", "pad:*", "pads:*", "done:*", "-",
                                         "events:*", "threads", "thread:*")]
    rules += [f"~{tag}:{k}" for k in REVIEW_KEYS] if needs.review else []
    if needs.code:
        rules += [*(f"~{tag}:{k}" for k in CODE_KEYS), f"~{tag}:due:{workflow}:{role}",
                  *(f"+{c}" for c in CODE_COMMANDS)]
    rules += [f"%R~{keys.prefix}:hb:*", f"~{keys.heartbeat(role)}-*", f"~{tag}:cancelled"]
    rules += [f"%R~{tag}:tenantset", f"%R~{keys.tenants()}"]  # whose streams to read, by which weight
    rules += [f"~{tag}:{k}" for k in ("tcaps", "trun:*", "tqueue:*")]  # capped tenants' runs (broker/tenants.py)
    rules += [f"+{c}" for feature in features for c in FEATURE_COMMANDS.get(feature, ())]
    rules += [f"+{c}" for c in CLUSTER_COMMANDS] if cluster else []
    rules += [f"+{c}" for c in SCRIPT_COMMANDS] if scripts else []
    rules += [f"~{tag}:{k}" for feature in features for k in FEATURE_KEYS[feature]]
    rules += [f"~{keys.agent_pad(agent)}" for agent in needs.agent_memory]
    if needs.rate_limits:
        rules += [*(f"+{c}" for c in RATE_LIMIT_COMMANDS), f"~{keys.rate_limit_pattern()}"]
    if tenant:
        every = tenant == "*"
        rules += [*(f"+{c}" for c in TENANT_COMMANDS),
                  f"~{keys.prefix}:tusage:{tenant}:*",
                  f"~{keys.rate_limit_pattern() if every else keys.rate_limit(f'tenant:{tenant}')}"]
    return rules
