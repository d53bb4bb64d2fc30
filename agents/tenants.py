"""Tenants: who holds which API token, what each may see, and its limits (``BATON_TENANTS_FILE``).

The tenants file is TOML, one table per tenant; it holds only hashes of the tokens (``baton
tenants token NAME`` makes a token and prints its hash line; the token itself is shown once and
never stored or logged)::

    [tenants.acme]
    tokens = ["sha256:9f86d0...", "sha256:60303a..."]   # several: rotate without downtime
    rpm = 60                 # prompts per minute of the tenant's model calls (0: no limit)
    tpm = 20000              # tokens per minute
    quota_tokens = 1000000   # tokens per quota window (0: none)
    quota_window_s = 86400   # the window: a day unless said otherwise
    weight = 1               # share of the workers when several tenants wait
    max_running = 0          # most runs of the tenant running at once (0: no limit)

    [tenants.ops]
    admin = true             # sees and acts on every tenant's runs
    tokens = ["sha256:..."]

A request's bearer token names its :class:`Principal`: a tenant, or an admin (a tenant with
``admin = true``, or a token of ``BATON_API_TOKENS``, the plain admin tokens of deployments
without tenants). With no tokens at all, authentication is off and every caller is an admin.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated

import msgspec

from ..protocol.fields import KEY_SAFE_PATTERN
from ..protocol.tenants import TenantLimits
from .settings import SettingsError

__all__ = ["ADMIN", "Directory", "Principal", "Tenant", "TenantsError", "bearer_token", "hash_token", "load_tenants",
           "new_token"]

HASH_PREFIX = "sha256:"

TenantName = Annotated[str, msgspec.Meta(min_length=1, max_length=64, pattern=KEY_SAFE_PATTERN)]
TokenHash = Annotated[str, msgspec.Meta(pattern=r"^sha256:[0-9a-f]{64}$")]


class TenantsError(SettingsError):
    """The tenants file cannot be read or breaks a rule (the message says which, in one line)."""


def hash_token(token: str) -> str:
    """The stored form of ``token``: ``sha256:<hex>`` (tokens are random, so a fast hash is enough)."""
    return HASH_PREFIX + hashlib.sha256(token.encode()).hexdigest()


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header value (``None``: not one)."""
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def new_token() -> str:
    """A new random API token (256 bits, URL-safe)."""
    return "bt_" + secrets.token_urlsafe(32)


class Tenant(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """One tenant of the tenants file: its token hashes, whether it is an admin, its limits."""

    tokens: list[TokenHash] = msgspec.field(default_factory=list)
    admin: bool = False
    rpm: int = 0
    tpm: int = 0
    quota_tokens: int = 0
    quota_window_s: int = 86_400
    weight: int = 1
    max_running: int = 0

    def limits(self) -> TenantLimits:
        """The tenant's limits as published to Redis (checked against ``TenantLimits``' rules)."""
        return msgspec.convert({f: getattr(self, f) for f in TenantLimits.__struct_fields__}, TenantLimits)


class _File(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    tenants: dict[TenantName, Tenant] = msgspec.field(default_factory=dict)


def load_tenants(path: str | Path) -> dict[str, Tenant]:
    """The tenants of the TOML file at ``path``; ``TenantsError`` (one line) when it is unreadable or wrong."""
    try:
        raw = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        tenants = msgspec.convert(raw, _File).tenants
        for t in tenants.values():
            t.limits()
    except OSError as exc:
        raise TenantsError(f"cannot read the tenants file {str(path)!r}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, msgspec.ValidationError) as exc:
        raise TenantsError(f"bad tenants file {str(path)!r}: {exc}") from None
    return tenants


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a tenant (``admin`` False sees only its own) or an admin (``tenant`` may be
    empty). ``token_id`` is a short, non-secret fingerprint of the token for the audit log."""

    tenant: str = ""
    admin: bool = False
    token_id: str = ""

    @property
    def who(self) -> str:
        """How the audit log names the caller."""
        return self.tenant or ("admin" if self.admin else "anonymous")

    def owns(self, tenant: str) -> bool:
        """Whether this caller may see and act on something of ``tenant``."""
        return self.admin or (bool(self.tenant) and hmac.compare_digest(self.tenant, tenant))


ADMIN = Principal(admin=True)
"""The caller when authentication is off (no tokens): sees everything, as before tenants."""


@dataclass(frozen=True)
class Directory:
    """Token hashes to principals: the tenants file's tenants and the plain admin tokens."""

    tenants: Mapping[str, Tenant] = field(default_factory=dict)
    admin_tokens: tuple[str, ...] = ()
    _by_hash: dict[str, Principal] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for name, t in self.tenants.items():
            for h in t.tokens:
                self._by_hash[h] = Principal(tenant=name, admin=t.admin, token_id=h[len(HASH_PREFIX):][:8])
        for token in self.admin_tokens:
            h = hash_token(token)
            self._by_hash.setdefault(h, Principal(admin=True, token_id=h[len(HASH_PREFIX):][:8]))

    @classmethod
    def of(cls, tenants_file: str = "", admin_tokens: Iterable[str] = ()) -> Directory:
        """The directory of ``tenants_file`` (none: no tenants) and ``admin_tokens``."""
        return cls(load_tenants(tenants_file) if tenants_file else {}, tuple(t for t in admin_tokens if t))

    @property
    def enabled(self) -> bool:
        """Whether any token is known (otherwise authentication is off)."""
        return bool(self._by_hash)

    def principal(self, token: str | None) -> Principal | None:
        """The principal of ``token``; None for a missing or unknown one (every known hash is compared
        in constant time)."""
        if not token:
            return None
        given = hash_token(token)
        found = None
        for h, who in self._by_hash.items():
            if hmac.compare_digest(given, h):
                found = who
        return found

    def limits(self) -> dict[str, TenantLimits]:
        """Every tenant's limits, to publish to Redis."""
        return {name: t.limits() for name, t in self.tenants.items()}
