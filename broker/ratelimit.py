"""Shared rate limits per model endpoint: reserve, settle and read usage (``lua/ratelimit.lua``).

Every worker of every role that calls a model shares that model's state key
(``Keys.rate_limit``), on any host. One ``reserve`` call asks for requests and tokens together
and answers either granted or how long to wait; time is the Redis server's, so worker clocks
do not matter. ``settle`` gives back the tokens a call reserved but did not use. ``usage`` reads
every model's requests and tokens over the last minute for the monitor and the dashboard.
"""

from __future__ import annotations

from dataclasses import dataclass

from .errors import Redis
from .keys import Keys
from .scripts import LuaScript
from .text import as_text

__all__ = ["STATE_TTL_S", "Grant", "ModelUsage", "reserve", "settle", "usage"]

STATE_TTL_S = 300
"""A model's rate-limit state expires this long after its last call (longer than any burst window)."""

_script = LuaScript("ratelimit.lua")


@dataclass(frozen=True, slots=True)
class Grant:
    """The answer to a reservation: granted (in Redis minute ``minute``), or wait ``wait_ms`` and ask again."""

    granted: bool
    wait_ms: int = 0
    minute: int = 0


@dataclass(frozen=True, slots=True)
class ModelUsage:
    """One model's usage over the last minute against its limits (0 = unlimited)."""

    model: str
    rpm: int
    tpm: int
    requests: float
    tokens: float
    total_requests: int
    total_tokens: int


def reserve(client: Redis, keys: Keys, model: str, *, rpm: int, tpm: int, requests: int, tokens: int) -> Grant:
    """Reserve ``requests`` and ``tokens`` of ``model`` under ``rpm``/``tpm``, or say how long to wait."""
    ok, value = _script(client, [keys.rate_limit(model)],
                        ["acquire", model, rpm, tpm, requests, tokens, STATE_TTL_S])
    if int(ok):
        return Grant(True, minute=int(value))
    return Grant(False, wait_ms=max(1, int(value)))


def settle(client: Redis, keys: Keys, model: str, *, rpm: int, tpm: int, unused_tokens: int, minute: int) -> None:
    """Give back ``unused_tokens`` of a reservation granted in ``minute``."""
    _script(client, [keys.rate_limit(model)],
            ["settle", model, rpm, tpm, max(0, unused_tokens), minute, STATE_TTL_S])


def usage(client: Redis, keys: Keys) -> list[ModelUsage]:
    """Every model with rate-limit state: requests and tokens in the last minute (the current
    minute's count plus the previous minute's, weighted by the part of it still in the window)."""
    names = sorted(as_text(k) for k in client.scan_iter(match=keys.rate_limit_pattern(), count=500))
    if not names:
        return []
    secs, _ = client.time()
    minute, into = divmod(int(secs), 60)
    pipe = client.pipeline(transaction=False)
    for name in names:
        pipe.hgetall(name)
    out: list[ModelUsage] = []
    for raw in pipe.execute():
        h = {as_text(k): as_text(v) for k, v in raw.items()}
        if "model" not in h:
            continue
        out.append(_usage(h, minute, 1 - into / 60))
    return sorted(out, key=lambda u: u.model)


def _usage(h: dict[str, str], minute: int, prev_weight: float) -> ModelUsage:
    def num(field: str) -> float:
        return float(h.get(field) or 0)

    at = int(num("min"))
    cur_req, cur_tok = (num("req"), num("tok")) if at == minute else (0.0, 0.0)
    if at == minute:
        prev_req, prev_tok = num("preq"), num("ptok")
    elif at == minute - 1:
        prev_req, prev_tok = num("req"), num("tok")
    else:
        prev_req = prev_tok = 0.0
    return ModelUsage(model=h["model"], rpm=int(num("rpm")), tpm=int(num("tpm")),
                      requests=round(cur_req + prev_req * prev_weight, 1),
                      tokens=round(cur_tok + prev_tok * prev_weight, 1),
                      total_requests=int(num("total_req")), total_tokens=int(num("total_tok")))
