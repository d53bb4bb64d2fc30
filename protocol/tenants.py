"""A tenant's limits as stored in Redis (``Keys.tenants``): what submits and workers enforce.

Every limit is optional (0: none). ``rpm`` and ``tpm`` are per-minute limits on the tenant's model
calls (prompts and tokens, on the shared GCRA limiter); ``quota_tokens`` is the most tokens the
tenant's runs may generate per ``quota_window_s`` (a day unless said otherwise; windows are fixed,
counted from the epoch). ``weight`` and ``max_running`` are the tenant's share of the workers when
several tenants wait (fair dispatch reads them).
"""

from __future__ import annotations

from typing import Annotated

import msgspec

__all__ = ["DEFAULT_QUOTA_WINDOW_S", "TenantLimits"]

DEFAULT_QUOTA_WINDOW_S = 86_400
"""A token quota's window unless the tenant's says otherwise: a day."""

Limit = Annotated[int, msgspec.Meta(ge=0, le=2**53)]


class TenantLimits(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The limits of one tenant (0: no limit)."""

    rpm: Limit = 0
    tpm: Limit = 0
    quota_tokens: Limit = 0
    quota_window_s: Annotated[int, msgspec.Meta(ge=1, le=366 * 86_400)] = DEFAULT_QUOTA_WINDOW_S
    weight: Annotated[int, msgspec.Meta(ge=1, le=1000)] = 1
    max_running: Limit = 0
