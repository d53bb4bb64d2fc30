"""Completion webhooks: checking a URL against the allow-list, and delivering the run's end to it.

A run submitted with a webhook (``submit(..., webhook=URL)``, the API body's ``webhook``, ``baton
submit --webhook``, or the workflow's ``webhook = "URL"``) gets a delivery in Redis
(``broker/webhooks.py``) before its first task is written. The URL must pass
``BATON_WEBHOOK_ALLOW`` at submit (else :class:`WebhookRefused`) and again at every attempt, after
DNS resolution; the attempt then connects to the very address that was checked (no second lookup
a rebinding DNS server could answer differently) and follows no redirect.

``BATON_WEBHOOK_ALLOW`` is a comma-separated list of host names (``hooks.example.com``, or
``*.example.com`` for its subdomains: allowed whatever they resolve to), IP networks
(``10.1.0.0/16``, ``127.0.0.1``: a URL's host must resolve only into them) and ``public`` (any
globally routable address: not loopback, private, link-local, shared or reserved). Empty, the
default, allows no webhook at all: an operator names where the servers may call.

Deliverers are every worker process's upkeep thread and ``baton scheduler`` (``agents/upkeep.py``),
each with ``BATON_WEBHOOK_SECRET`` to sign with. :func:`deliver_due` looks at the due deliveries:
a run that has not ended is looked at again a pass later; an ended one is POSTed (its terminal
event and result, signed as ``protocol/webhooks.py`` says). A 2xx answer delivers it; anything else
(an error status, a refused or timed-out connection) is retried with an exponential back-off (1 s
doubling to 5 min, jittered) until ``BATON_WEBHOOK_RETRY_S`` after the run's end, then it is
failed: ``baton webhooks failed`` lists it and ``baton webhooks resend RUN`` sends it again.
"""

from __future__ import annotations

import ipaddress
import logging
import random
import socket
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Any

import httpx
import msgspec

from ..broker import Keys, Redis, RunRecord, run_records
from ..broker import webhooks as store
from ..broker.drive import Op, awaiting, blocking
from ..broker.events import last_event
from ..protocol import ProtocolError, new_id
from ..protocol.webhooks import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    MAX_URL_LENGTH,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    Delivery,
    sign,
)
from .settings import Settings

__all__ = ["AllowList", "WebhookRefused", "aresend", "check_url", "deliver_due", "forget_run", "forget_run_op",
           "payload", "resend", "resend_op", "watch_run", "watch_run_op"]

log = logging.getLogger("baton.webhooks")

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
BATCH = 100
"""Deliveries one pass looks at, at most."""
MAX_BACKOFF_S = 300.0
ORPHAN_S = 120.0
"""A delivery whose run still has no record this long after the submit (on top of the submit's
own retry time) belongs to a submit that died half-way: it fails as "run not found"."""


class WebhookRefused(ProtocolError):
    """A webhook URL that is malformed or not allowed by ``BATON_WEBHOOK_ALLOW``."""


@dataclass(frozen=True)
class AllowList:
    """``BATON_WEBHOOK_ALLOW`` parsed (see the module)."""

    names: frozenset[str] = frozenset()
    suffixes: tuple[str, ...] = ()
    networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = ()
    public: bool = False
    text: str = field(default="", compare=False)

    @classmethod
    def parse(cls, text: str) -> AllowList:
        names: set[str] = set()
        suffixes: list[str] = []
        networks = []
        public = False
        for item in (i.strip().lower() for i in text.split(",")):
            if not item:
                continue
            if item == "public":
                public = True
                continue
            try:
                networks.append(ipaddress.ip_network(item, strict=False))
                continue
            except ValueError:
                pass
            name = item.removeprefix("*.")
            if not name or any(c in name for c in "/:@ *"):
                raise WebhookRefused(f"bad item {item!r} in BATON_WEBHOOK_ALLOW: use host names, *.domain, "
                                     "IP networks (10.0.0.0/8) or public")
            if item.startswith("*."):
                suffixes.append("." + name)
            else:
                names.add(name)
        return cls(frozenset(names), tuple(suffixes), tuple(networks), public, text)

    def allows_name(self, host: str) -> bool:
        return host in self.names or any(host.endswith(s) for s in self.suffixes)

    def allows_address(self, address: Address) -> bool:
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        return any(address in n for n in self.networks) or (self.public and address.is_global)

    def addresses(self, host: str, port: int, *, resolve: bool) -> list[Address]:
        """The addresses a URL on ``host`` may be sent to (``WebhookRefused`` if none may). A host allowed
        by name is resolved only with ``resolve``; other names are resolved and each address checked."""
        try:
            literal: Address | None = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            if not self.allows_address(literal):
                raise WebhookRefused(f"webhook address {host} is not in BATON_WEBHOOK_ALLOW")
            return [literal]
        if self.allows_name(host):
            return _resolve(host, port) if resolve else []
        if not (self.networks or self.public):
            raise WebhookRefused(f"webhook host {host} is not in BATON_WEBHOOK_ALLOW")
        found = _resolve(host, port)
        if bad := [a for a in found if not self.allows_address(a)]:
            raise WebhookRefused(f"webhook host {host} resolves to {bad[0]}, which is not in BATON_WEBHOOK_ALLOW")
        return found


def _resolve(host: str, port: int) -> list[Address]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise WebhookRefused(f"webhook host {host} does not resolve: {exc}") from None
    found = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in infos))
    if not found:
        raise WebhookRefused(f"webhook host {host} does not resolve")
    return found


def _split(url: str) -> tuple[urllib.parse.SplitResult, str, int]:
    """``url`` split, with its host and port; ``WebhookRefused`` unless it is a plain http(s) URL."""
    if len(url) > MAX_URL_LENGTH:
        raise WebhookRefused(f"webhook URL is longer than {MAX_URL_LENGTH} characters")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise WebhookRefused(f"webhook URL {url!r} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise WebhookRefused("webhook URL may not carry credentials (user:password@)")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise WebhookRefused(f"webhook URL {url!r} has a bad port") from None
    return parts, parts.hostname.lower(), port


def check_url(url: str, allow: str) -> str:
    """``url`` if ``BATON_WEBHOOK_ALLOW`` (``allow``) lets baton call it, else ``WebhookRefused`` with
    the reason (names matched by a network or ``public`` are resolved now, and again at delivery)."""
    _, host, port = _split(url)
    rules = AllowList.parse(allow)
    if rules == AllowList():
        raise WebhookRefused("webhooks are off: BATON_WEBHOOK_ALLOW is empty (name the hosts or networks "
                             "baton may call)")
    rules.addresses(host, port, resolve=False)
    return url


def watch_run_op(keys: Keys, run_id: str, url: str) -> Op[None]:
    """Give ``run_id`` a delivery to ``url`` (already checked), looked at from now on."""
    now = time.time()
    yield from store.watch_op(keys, Delivery(run_id=run_id, url=url, created_at=now, next_at=now), now)


def forget_run_op(keys: Keys, run_id: str) -> Op[None]:
    """Drop ``run_id``'s delivery (its submit failed: there is no run to report on)."""
    yield from store.forget_op(keys, [run_id])


watch_run = blocking(watch_run_op)
forget_run = blocking(forget_run_op)


def resend_op(keys: Keys, run_id: str) -> Op[Delivery | None]:
    """Send ``run_id``'s delivery again now, with a fresh retry window; None when it has none."""
    (d,) = yield from store.get_deliveries_op(keys, [run_id])
    if d is None:
        return None
    now = time.time()
    d = msgspec.structs.replace(d, status="pending" if d.status != "waiting" else "waiting", retry_from=now,
                                next_at=now, last_error="")
    yield from store.save_op(keys, d)
    return d


resend = blocking(resend_op)
aresend = awaiting(resend_op)


_encode = msgspec.json.Encoder().encode


def payload(redis: Redis, keys: Keys, record: RunRecord) -> bytes:
    """The body POSTed for ``record``'s run: its terminal event and its result."""
    found = last_event(redis, keys, record.run_id)
    return _encode({"run_id": record.run_id, "status": record.status.value, "workflow": record.workflow,
                    "result": record.result, "error": record.error, "finished_at": record.finished_at,
                    "metadata": record.metadata, "usage": record.usage.as_dict(),
                    "event": msgspec.to_builtins(found[1]) if found else None})


def _post(settings: Settings, d: Delivery, body: bytes) -> tuple[int, str]:
    """One attempt: (HTTP status, "") or (0, why it did not get one); ``WebhookRefused`` when the
    allow-list no longer lets it through."""
    parts, host, port = _split(d.url)
    address = AllowList.parse(settings.webhook_allow).addresses(host, port, resolve=True)[0]
    pinned = f"[{address}]" if address.version == 6 else str(address)
    url = urllib.parse.urlunsplit(parts._replace(netloc=f"{pinned}:{port}"))
    stamp = str(int(time.time()))
    headers = {"Host": parts.netloc, "Content-Type": "application/json", "User-Agent": "baton-webhooks",
               DELIVERY_HEADER: d.run_id, ATTEMPT_HEADER: str(d.attempts + 1), TIMESTAMP_HEADER: stamp,
               SIGNATURE_HEADER: sign(settings.webhook_secret, stamp, body)}
    extensions: dict[str, Any] = {"sni_hostname": host} if parts.scheme == "https" else {}
    try:
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False) as http:
            answer = http.post(url, content=body, headers=headers, extensions=extensions)
    except httpx.HTTPError as exc:
        return 0, f"{type(exc).__name__}: {exc}"[:500]
    return answer.status_code, "" if answer.is_success else f"HTTP {answer.status_code}"


def _attempt(redis: Redis, keys: Keys, settings: Settings, run_id: str, record: RunRecord | None) -> bool:
    """Send ``run_id``'s delivery if it is due and no other deliverer holds it; whether we sent it."""
    token = new_id()
    if not store.hold(redis, keys, run_id, token, int((settings.webhook_timeout_s + 10) * 1000)):
        return False
    try:
        d = store.get_delivery(redis, keys, run_id)
        now = time.time()
        if d is None or d.status in ("delivered", "failed") or d.next_at > now:
            return False
        if d.status == "waiting":
            d = msgspec.structs.replace(d, status="pending", retry_from=now)
        if record is None:
            store.save(redis, keys, msgspec.structs.replace(
                d, status="failed", next_at=now, last_error="run not found (never started, or its record expired)"))
            return False
        try:
            code, error = _post(settings, d, payload(redis, keys, record))
        except WebhookRefused as exc:
            store.save(redis, keys, msgspec.structs.replace(d, status="failed", next_at=now, last_error=str(exc)))
            log.warning("webhook of run %s refused: %s", run_id, exc)
            return False
        now = time.time()
        d = msgspec.structs.replace(d, attempts=d.attempts + 1, last_code=code, last_error=error)
        if not error:
            store.save(redis, keys, msgspec.structs.replace(d, status="delivered", delivered_at=now, next_at=now))
            return True
        delay = min(2.0 ** (d.attempts - 1), MAX_BACKOFF_S) * random.uniform(0.75, 1.0)
        if now + delay > d.retry_from + settings.webhook_retry_s:
            store.save(redis, keys, msgspec.structs.replace(d, status="failed", next_at=now))
            log.warning("webhook of run %s failed after %d attempts: %s", run_id, d.attempts, error)
        else:
            store.save(redis, keys, msgspec.structs.replace(d, next_at=now + delay))
        return False
    finally:
        store.release(redis, keys, run_id, token)


def deliver_due(redis: Redis, keys: Keys, settings: Settings, stop: threading.Event | None = None) -> int:
    """One pass over the due deliveries (see the module); how many this pass delivered."""
    now = time.time()
    ids = store.due(redis, keys, now, BATCH)
    later: dict[str, float] = {}
    sent = 0
    for run_id, d, record in zip(ids, store.get_deliveries(redis, keys, ids), run_records(redis, keys, ids),
                                 strict=True):
        if stop is not None and stop.is_set():
            break
        if d is None:
            store.forget(redis, keys, [run_id])
        elif d.status == "waiting" and (record is None or not record.ended):
            orphan = record is None and now - d.created_at > settings.submit_retry_s + ORPHAN_S
            if not orphan:
                later[run_id] = now + settings.upkeep_poll_s
                continue
            sent += _attempt(redis, keys, settings, run_id, None)
        else:
            sent += _attempt(redis, keys, settings, run_id, record)
    store.postpone(redis, keys, later)
    return sent
