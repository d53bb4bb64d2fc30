"""The prepare stage: memories, declared tool steps and shared memory, the hop span and the prompt.

Runs once per task and batch, whatever happens to the model call after it: the ``hop_started``
events the guard did not write already (a fan-in role's) go out in one round trip, then each
task's steps run and its prompt is rendered.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from ....broker import Memory, scratchpads
from ....protocol import HopStarted, Task
from ..role import RoleRuntime
from ..tracing import start_hop, use_hop
from ..work import Batch

__all__ = ["Prepare", "memories"]


def memories(rt: RoleRuntime, tasks: Sequence[Task]) -> list[list[Memory]]:
    """The memory each task's prompt shows: the agent's long-term memory, the run's scratchpads, or none."""
    if (long_term := rt.steps.memories(tasks)) is not None:
        return long_term
    if rt.spec.memory != "run":
        return [[] for _ in tasks]
    return [[*pad] for pad in scratchpads(rt.client, rt.keys, [(t.run_id, rt.spec.agent) for t in tasks])]


class Prepare:
    """Fills each item's ``memory``, ``span``, ``ctx``, ``prompt`` and ``started``."""

    def __init__(self, rt: RoleRuntime, *, render: bool = True) -> None:
        self.rt = rt
        self.render = render

    def __call__(self, batch: Batch) -> None:
        rt, work = self.rt, batch.work
        if not work:
            return
        spec = rt.spec
        if any(w.memory is None for w in work):
            for w, memory in zip(work, memories(rt, [w.task for w in work]), strict=True):
                w.memory = memory
        rt.events.emit([HopStarted(run_id=w.task.run_id, role=spec.role, agent=spec.agent, hop=w.task.hop,
                                   msg_id=w.task.id, consumer=rt.consumer) for w in work if not w.announced])
        for w in work:
            w.span = start_hop(w.task, spec.role, spec.agent, rt.consumer)
            with use_hop(w.span):
                w.ctx = rt.steps.before(w.task)
            if self.render:
                w.prompt = rt.steps.render(w.task, w.memory or [], w.ctx)
            w.started = time.time()
