"""The audit stream: one entry per state-changing API call, who did what, when and from where.

An entry holds ``who`` (the tenant, ``admin`` or ``anonymous``), ``tenant``, ``token`` (a short
fingerprint of the token's hash, never the token), ``method``, ``path``, ``status`` (the HTTP
answer), ``client`` (the peer address) and ``at`` (seconds since the epoch); its id is its time.
The stream is capped at ``AUDIT_MAXLEN`` entries (approximately).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import redis

from .drive import Op, blocking
from .keys import Keys
from .pages import PAGE, StreamPages
from .text import as_text

__all__ = ["AUDIT_MAXLEN", "AuditEntry", "read_audit", "read_audit_op", "write_audit"]

AUDIT_MAXLEN = 100_000
"""Audit entries kept (the stream is trimmed approximately past this)."""

FIELDS = ("who", "tenant", "token", "method", "path", "status", "client", "at")


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """One audited call."""

    id: str
    who: str
    tenant: str
    token: str
    method: str
    path: str
    status: int
    client: str
    at: float


def write_audit(client: redis.Redis, keys: Keys, entry: Mapping[str, str | int | float]) -> str:
    """Append ``entry`` (``FIELDS``) to the audit stream; return its id."""
    fields = {k: str(entry.get(k, "")) for k in FIELDS}
    return as_text(client.xadd(keys.audit(), fields, maxlen=AUDIT_MAXLEN, approximate=True))  # type: ignore[arg-type]


def read_audit_op(keys: Keys, *, limit: int = 50, tenant: str | None = None) -> Op[list[AuditEntry]]:
    """The newest ``limit`` entries, newest first (only ``tenant``'s when given)."""
    pages = StreamPages(keys.audit(), lambda eid, raw: _entry(eid, {as_text(k): as_text(v) for k, v in raw.items()}),
                        newest_first=True, page=max(limit, PAGE))
    out: list[AuditEntry] = []
    while len(out) < limit and (e := (yield from pages.next_op())) is not None:
        if tenant is None or e.tenant == tenant:
            out.append(e)
    return out


read_audit = blocking(read_audit_op)


def _entry(entry_id: str, f: Mapping[str, str]) -> AuditEntry:
    def num(name: str) -> float:
        try:
            return float(f.get(name) or 0)
        except ValueError:
            return 0.0

    return AuditEntry(id=entry_id, who=f.get("who", ""), tenant=f.get("tenant", ""), token=f.get("token", ""),
                      method=f.get("method", ""), path=f.get("path", ""), status=int(num("status")),
                      client=f.get("client", ""), at=num("at"))
