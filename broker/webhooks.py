"""Completion webhooks in Redis: each run's delivery, the queue of due ones, the failed ones.

Keys (one hash tag, so every transaction here stays in one Cluster slot): ``{webhooks}:d:RUN``
holds a run's :class:`~baton.protocol.webhooks.Delivery` as JSON; the sorted set ``{webhooks}:due``
holds every delivery not yet delivered nor failed, scored by when a deliverer should look at it
next (a waiting run: is it over? a pending one: its next attempt); ``{webhooks}:failed`` holds the
failed ones by when they failed. A deliverer takes a delivery with a short lease
(:func:`hold`, ``SET NX PX``) and writes its outcome and its place in the queue in one
MULTI (:func:`save`). A deliverer that dies mid-attempt leaves the delivery in the queue, where
another takes it once the lease runs out: none is lost (one may be sent twice; receivers dedupe on
``Baton-Delivery``). Delivered ones are kept as long as idempotency markers, failed ones until re-sent.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import msgspec
import redis

from ..protocol.webhooks import Delivery
from .drive import Op, awaiting, blocking, execute
from .keys import Keys
from .text import as_text

__all__ = [
    "afailed", "due", "failed", "failed_op", "forget", "forget_op", "get_deliveries", "get_delivery", "hold",
    "postpone", "release", "save", "save_op", "watch", "watch_op",
]

_encode = msgspec.json.Encoder().encode
_decode = msgspec.json.Decoder(Delivery).decode


def _key(keys: Keys, part: str) -> str:
    return f"{keys.prefix}:{{webhooks}}:{part}"


def watch_op(keys: Keys, delivery: Delivery, at: float) -> Op[None]:
    """Store ``delivery`` and queue it to be looked at ``at``."""
    pipe = yield lambda c: c.pipeline(transaction=True)
    pipe.set(_key(keys, f"d:{delivery.run_id}"), _encode(delivery))
    pipe.zadd(_key(keys, "due"), {delivery.run_id: at})
    yield lambda _: pipe.execute()


watch = blocking(watch_op)


def due(client: redis.Redis, keys: Keys, now: float, limit: int) -> list[str]:
    """Run ids of up to ``limit`` deliveries due at ``now``, the longest due first."""
    raw: Any = client.zrangebyscore(_key(keys, "due"), "-inf", now, start=0, num=limit)
    return [as_text(r) for r in raw]


def get_deliveries_op(keys: Keys, run_ids: list[str]) -> Op[list[Delivery | None]]:
    """The deliveries of ``run_ids`` (None where there is none)."""
    if not run_ids:
        return []
    raw: Any = yield lambda c: c.mget([_key(keys, f"d:{r}") for r in run_ids])
    return [None if v is None else _decode(v) for v in raw]


get_deliveries = blocking(get_deliveries_op)


def get_delivery(client: redis.Redis, keys: Keys, run_id: str) -> Delivery | None:
    """The delivery of ``run_id``, if any."""
    return get_deliveries(client, keys, [run_id])[0]


def postpone(client: redis.Redis, keys: Keys, later: Mapping[str, float]) -> None:
    """Look at these queued deliveries again at the given times (ones no longer queued stay out)."""
    if later:
        client.zadd(_key(keys, "due"), dict(later), xx=True)


def forget_op(keys: Keys, run_ids: Iterable[str]) -> Op[None]:
    """Drop these deliveries altogether (their run was never submitted)."""
    ids = list(run_ids)
    if ids:
        pipe = yield lambda c: c.pipeline(transaction=True)
        pipe.zrem(_key(keys, "due"), *ids)
        pipe.zrem(_key(keys, "failed"), *ids)
        pipe.delete(*(_key(keys, f"d:{r}") for r in ids))
        yield lambda _: pipe.execute()


forget = blocking(forget_op)


def hold(client: redis.Redis, keys: Keys, run_id: str, token: str, lease_ms: int) -> bool:
    """Take the lease on sending ``run_id``'s delivery for ``lease_ms``; whether we got it."""
    return bool(client.set(_key(keys, f"lease:{run_id}"), token, nx=True, px=lease_ms))


def release(client: redis.Redis, keys: Keys, run_id: str, token: str) -> None:
    """Give the lease back if ``token`` still holds it."""
    key = _key(keys, f"lease:{run_id}")

    def apply(pipe: Any) -> None:
        if as_text(pipe.get(key) or b"") == token:
            pipe.multi()
            pipe.delete(key)

    client.transaction(apply, key)


def save_op(keys: Keys, delivery: Delivery) -> Op[None]:
    """Write ``delivery`` and its place: queued at ``next_at`` while waiting or pending, among the
    failed ones once failed, out of both (and expiring with the idempotency markers) once delivered."""
    key, run_id = _key(keys, f"d:{delivery.run_id}"), delivery.run_id
    pipe = yield lambda c: c.pipeline(transaction=True)
    if delivery.status == "delivered":
        pipe.set(key, _encode(delivery), ex=keys.retention.marker_s)
    else:
        pipe.set(key, _encode(delivery))
    if delivery.status in ("waiting", "pending"):
        pipe.zadd(_key(keys, "due"), {run_id: delivery.next_at})
        pipe.zrem(_key(keys, "failed"), run_id)
    else:
        pipe.zrem(_key(keys, "due"), run_id)
        if delivery.status == "failed":
            pipe.zadd(_key(keys, "failed"), {run_id: delivery.next_at})
        else:
            pipe.zrem(_key(keys, "failed"), run_id)
    yield execute(pipe)


save = blocking(save_op)


def failed_op(keys: Keys, limit: int = 100) -> Op[list[Delivery]]:
    """The failed deliveries, newest failure first."""
    raw: Any = yield lambda c: c.zrevrange(_key(keys, "failed"), 0, limit - 1)
    return [d for d in (yield from get_deliveries_op(keys, [as_text(r) for r in raw])) if d is not None]


failed = blocking(failed_op)
afailed = awaiting(failed_op)
