"""``clock``: the current time, UTC, ISO 8601 (or unix seconds with ``format = "unix"``)."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping

from .base import ToolContext, ToolError

__all__ = ["Clock"]


class Clock:
    """The current time: ``{}`` -> ``"2026-01-01T12:00:00+00:00"``."""

    name = "clock"
    description = "the current UTC time; args: format (iso or unix, default iso)"

    def run(self, args: Mapping[str, str], ctx: ToolContext) -> str:
        """Return the time in the requested format."""
        fmt = args.get("format", "iso")
        if fmt == "unix":
            return f"{time.time():.3f}"
        if fmt == "iso":
            return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
        raise ToolError(f"unknown format {fmt!r}; use iso or unix")
