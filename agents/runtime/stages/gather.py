"""The gather stage: for a fan-in (``join``) role, parts wait (acked) until their group is complete."""

from __future__ import annotations

from ..role import RoleRuntime
from ..routing import gather
from ..work import Batch

__all__ = ["Gather"]


class Gather:
    """Parks incomplete groups' parts; a completing part becomes the whole (``routing.gather``)."""

    def __init__(self, rt: RoleRuntime) -> None:
        self.rt = rt

    def __call__(self, batch: Batch) -> None:
        rt = self.rt
        if not rt.spec.join or not batch.work:
            return
        batch.work = gather(rt.client, rt.keys, rt.streams.group, rt.consumer, batch.work)
