"""The atomic handoff: outputs, scratchpad entry, run record and XACK in one Lua step.

A handoff either persists whole or not at all, keyed by an idempotency marker derived from the
input message id. The script first checks that the input entry is still pending for this
consumer, so a worker whose entry was reclaimed cannot commit a second copy.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources

import redis

from broker.keys import Keys
from broker.streams import Entry

__all__ = ["Handoff", "Outcome", "commit"]

_LUA = resources.files("broker").joinpath("lua/commit.lua").read_text()
DONE_TTL_S = 7 * 24 * 3600


class Outcome(enum.IntEnum):
    """What a commit did."""

    STALE = 0
    """The input was no longer pending for this consumer (reclaimed or acked): nothing written."""
    COMMITTED = 1
    DUPLICATE = -1
    """The message had committed before; the input was acked again, nothing else written."""


@dataclass(frozen=True, slots=True)
class Handoff:
    """Everything one processed entry writes.

    ``outputs`` are ``(stream key, payload)`` pairs published with XADD; ``pad`` is
    ``(agent, field, value)`` for the scratchpad entry; ``record`` fields go to the run record.
    ``msg_id`` and ``run_id`` locate the idempotency marker; a message that could not be
    decoded uses the entry id and the placeholder slot of its partition.
    """

    entry: Entry
    run_id: str | None
    msg_id: str
    outputs: Sequence[tuple[str, bytes]] = ()
    pad: tuple[str, str, bytes] | None = None
    record: Mapping[str, str | bytes | float | int] = field(default_factory=dict)
    partition: int = 0


class _Committer:
    def __init__(self) -> None:
        self._scripts: dict[int, object] = {}

    def script(self, client: redis.Redis) -> object:
        key = id(client)
        if key not in self._scripts:
            self._scripts[key] = client.register_script(_LUA)
        return self._scripts[key]


_committer = _Committer()


def commit(
    client: redis.Redis,
    keys: Keys,
    group: str,
    consumer: str,
    handoffs: Sequence[Handoff],
    *,
    record_ttl_s: int = 0,
) -> list[Outcome]:
    """Commit several handoffs in one pipelined round trip; return each one's outcome."""
    script = _committer.script(client)
    pipe = client.pipeline(transaction=False)
    for h in handoffs:
        if h.run_id:
            run_key = keys.run(h.run_id)
            done_key = keys.done(h.run_id, h.msg_id)
        else:
            run_key = keys.placeholder(h.partition)
            done_key = f"{keys.tag(h.partition)}:done:{h.msg_id}"
        if h.pad and h.run_id:
            agent, pad_field, pad_value = h.pad
            pad_key, index_key = keys.pad(h.run_id, agent), keys.pads(h.run_id)
        else:
            agent, pad_field, pad_value = "", "", b""
            pad_key = index_key = keys.placeholder(h.partition)
        pairs: list[str | bytes | float | int] = []
        if h.run_id:
            for k, v in h.record.items():
                pairs += [k, v]
        args: list[str | bytes | float | int] = [
            group, consumer, h.entry.id, DONE_TTL_S,
            pad_field, pad_value, agent, h.entry.id.split("-")[0],
            record_ttl_s, len(pairs) // 2, *pairs, *(payload for _, payload in h.outputs),
        ]
        script_keys = [h.entry.stream, done_key, run_key, pad_key, index_key]
        script_keys += [stream for stream, _ in h.outputs]
        script(keys=script_keys, args=args, client=pipe)  # type: ignore[operator]
    return [Outcome(int(r)) for r in pipe.execute()]
