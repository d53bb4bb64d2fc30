"""How long a deployment keeps what its runs leave behind: record and marker lifetimes, event log
lengths, result retention (``Retention``, carried by ``Keys.retention``)."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_EVENTS_MAXLEN", "MARKER_TTL_S", "Retention", "marker_ttl"]

MARKER_TTL_S = 7 * 24 * 3600
"""Lifetime of a handoff's idempotency marker and of a fan-in's join hash, and the default
retention of finished results: longer than any redelivery can arrive late."""


def marker_ttl(record_ttl_s: int, marker_ttl_s: int = MARKER_TTL_S) -> int:
    """Lifetime of a handoff's idempotency marker and of a fan-in's join hash in a deployment whose
    run records live ``record_ttl_s`` (0: forever) and markers ``marker_ttl_s`` (``BATON_MARKER_TTL_S``):
    the shorter of the two, or ``marker_ttl_s`` when records are kept.

    A marker that outlived its run would only guard a run nobody can see any more, and with one
    written per hop a bounded deployment would otherwise hold a week of them.
    """
    return min(record_ttl_s, marker_ttl_s) if record_ttl_s > 0 else marker_ttl_s


DEFAULT_EVENTS_MAXLEN = 10_000
"""Events kept per run unless ``BATON_EVENTS_MAXLEN`` says otherwise (trimming is approximate)."""


@dataclass(frozen=True, slots=True)
class Retention:
    """How long a deployment keeps what its runs leave behind (``Settings.keys()`` fills it from
    ``BATON_*``). It travels with the key names (``Keys.retention``): every write that sets a TTL
    or trims a stream reads it there, so no caller hands lifetimes over one by one."""

    record_ttl_s: int = 0
    """Lifetime of run records, scratchpads and reviews after their last write (0: kept)."""
    events_maxlen: int = DEFAULT_EVENTS_MAXLEN
    """Events kept per run (approximate trimming)."""
    events_ttl_s: int = MARKER_TTL_S
    """A run's event log outlives its last write by this."""
    marker_ttl_s: int = MARKER_TTL_S
    """Longest lifetime of a handoff's idempotency marker (see :attr:`marker_s`)."""
    results_retention_s: int = MARKER_TTL_S
    """Finished results are trimmed from the result streams after this."""

    @property
    def marker_s(self) -> int:
        """Lifetime of a handoff's idempotency marker and of a fan-in's join hash (``marker_ttl``)."""
        return marker_ttl(self.record_ttl_s, self.marker_ttl_s)
