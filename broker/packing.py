"""Command packing for baton's Redis connections: hiredis at C speed, redis-py's own path otherwise.

redis-py's hiredis serializer copies every argument through a Python generator (to turn
``bytearray`` and ``memoryview`` arguments into ``bytes``) before handing the tuple to
``hiredis.pack_command``. A hop's commit is a call of ~45 arguments, and a batch pipelines one per
task: that pass cost about as much as the rest of redis-py's work on the commit (bench/NOTES.md,
"The hot path, profiled a third time"). ``FastPacker`` hands the arguments to hiredis as they
are and falls back to redis-py's serializer for what hiredis refuses (those argument types, bad
values: redis-py raises its own ``DataError``) and for command names with a space
(``"XINFO GROUPS"``). The bytes on the wire are the same.
"""

from __future__ import annotations

from typing import Any

from redis.connection import HiredisRespSerializer
from redis.utils import HIREDIS_AVAILABLE

__all__ = ["packer_kwargs"]


class FastPacker:
    """A redis-py command packer (``pack(*args) -> list[bytes]``) over ``hiredis.pack_command``."""

    def __init__(self) -> None:
        import hiredis

        serializer: Any = HiredisRespSerializer  # untyped in some redis-py releases
        self._fallback = serializer()
        self._pack = hiredis.pack_command

    def pack(self, *args: Any) -> list[bytes]:
        head = args[0]
        if (b" " if isinstance(head, bytes) else " ") in head:
            return self._fallback.pack(*args)  # type: ignore[no-any-return]
        try:
            return [self._pack(args)]
        except TypeError:
            return self._fallback.pack(*args)  # type: ignore[no-any-return]


def packer_kwargs() -> dict[str, Any]:
    """Connection keyword arguments that install ``FastPacker`` (none without hiredis)."""
    return {"command_packer": FastPacker()} if HIREDIS_AVAILABLE else {}
