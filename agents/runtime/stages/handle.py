"""The handle stage of a code role: the batch's handlers run at once, on the worker's event loop.

In a code role's pipeline ``Handle`` takes the generate stage's slot. The batch (up to the
worker's ``--concurrency`` entries, read together) runs its handlers concurrently on one asyncio
loop; every entry keeps its lease while its handler runs (the heartbeat renews the batch's
entries), and the handlers' model calls go through the role's :class:`RoleGateway`, which
coalesces them. What each handler decided goes on like a template role's output:

- a wait (``ctx.sleep``, ``ctx.wait_for``: ``timers.Suspend``) -> ``waiting`` (the wait stage parks it);
- an outcome (``Next``, ``Handoff``, ``FanOut``, ``Finish``) -> ``done`` (the hand-off stage);
  ``Fail(reason)`` or an outcome naming a role the workflow lacks -> ``rejected`` (dead letter);
- past the role's ``timeout`` the handler is cancelled -> ``failed`` (left pending: its
  redelivery counts one delivery, and ``max_deliveries`` bounds the attempts);
- an exception: transient ones (the runner says: ``baton.Retry``, model and Redis outages, types
  the app marks retryable) -> ``failed``; a refused model call (budget, outage past the deadline)
  -> ``rejected`` with its reason; any other -> ``rejected`` with the exception's type, message
  and innermost frame. The worker never dies of user code.

The runtime does not import ``agents/app``: the driver gets a :class:`HandlerRunner`, which builds
the handler's ``Context`` over the gateway and runs it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

import msgspec

from ...backends import Generation
from ...workflow.spec import RoleSpec
from ..decisions import check_decision, decided_output
from ..logs import bind
from ..modelgate import CallRefused, RoleGateway
from ..outages import CallHeld
from ..outcome import OUTCOMES, Fail, Next
from ..role import RoleRuntime
from ..timers import Suspend
from ..work import Batch, WorkItem

__all__ = ["Handle", "HandlerRunner"]

log = logging.getLogger("baton.worker")

_BY_TAG = {c.__struct_config__.tag: c for c in OUTCOMES}


def _as_ours(outcome: object) -> object:
    """An outcome Struct of another module with one of ours' tags (and fields) as ours."""
    config = getattr(type(outcome), "__struct_config__", None)
    if isinstance(outcome, OUTCOMES) or config is None or config.tag not in _BY_TAG:
        return outcome
    return _BY_TAG[config.tag](**msgspec.structs.asdict(outcome))  # type: ignore[arg-type]


class HandlerRunner(Protocol):
    """Runs a code role's handler for one work item (``agents/app`` provides it)."""

    async def run(self, gateway: RoleGateway, item: WorkItem, spec: RoleSpec) -> object:
        """Run the handler of ``spec`` on ``item``'s task; return its outcome."""
        ...

    def is_transient(self, exc: BaseException) -> bool:
        """Whether a handler that raised ``exc`` should run again later."""
        ...

    def failure_reason(self, exc: BaseException, role: str) -> str:
        """The dead-letter reason for a handler that raised ``exc``."""
        ...


class Handle:
    """Runs the handlers of a batch concurrently and sorts what became of each."""

    def __init__(self, rt: RoleRuntime, runner: HandlerRunner) -> None:
        self.rt = rt
        self.runner = runner
        self.loop = asyncio.new_event_loop()
        self.gateway = RoleGateway(rt)

    def __call__(self, batch: Batch) -> None:
        if not batch.work:
            return
        results = self.loop.run_until_complete(self._all(batch.work))
        for item, (kind, value) in zip(batch.work, results, strict=True):
            if kind == "done":
                batch.done.append((item, value))
            elif kind == "rejected":
                batch.rejected.append((item, value))
            elif kind == "waiting":
                batch.waiting.append((item, value))
            else:
                batch.failed.append(item)

    def close(self) -> None:
        """Close the event loop."""
        self.loop.close()

    async def _all(self, work: list[WorkItem]) -> list[tuple[str, Any]]:
        self.gateway.begin(len(work))  # all at once: the first call must not go out alone
        return list(await asyncio.gather(*(self._one(item) for item in work)))

    async def _one(self, item: WorkItem) -> tuple[str, Any]:
        rt, timeout = self.rt, self.rt.spec.timeout or None
        try:
            running = self.runner.run(self.gateway, item, rt.spec)
            outcome = await (asyncio.wait_for(running, timeout) if timeout else running)
        except TimeoutError:
            return self._retry(item, f"handler of role {rt.spec.role!r} ran past its timeout ({timeout:g}s); "
                                     "cancelled")
        except CallRefused as exc:
            return "rejected", exc.reason
        except CallHeld:
            return "failed", None
        except Suspend as waits:  # ctx.sleep / ctx.wait_for: the wait stage parks the task
            return "waiting", waits.wait
        except (Exception, SystemExit) as exc:  # noqa: BLE001 - user code never kills the worker
            if self.runner.is_transient(exc):
                item.retry_after = float(getattr(exc, "delay", None) or 0.0)
                return self._retry(item, f"handler of role {rt.spec.role!r} will be retried: {exc!r}")
            return "rejected", self.runner.failure_reason(exc, rt.spec.role)
        finally:
            self.gateway.end()
        return self._decided(item, outcome)

    def _retry(self, item: WorkItem, why: str) -> tuple[str, Any]:
        with bind(run_id=item.task.run_id, msg_id=item.task.id):
            log.warning("%s (delivery %d)", why, item.entry.deliveries)
        return "failed", None

    def _decided(self, item: WorkItem, outcome: object) -> tuple[str, Any]:
        if isinstance(outcome, str):
            outcome = Next(outcome)
        outcome = _as_ours(outcome)
        if not isinstance(outcome, OUTCOMES):
            return "rejected", (f"handler of role {self.rt.spec.role!r} returned {type(outcome).__name__}; "
                                "return a str or an Outcome (Next, Handoff, FanOut, Finish, Fail)")
        if isinstance(outcome, Fail):
            return "rejected", outcome.reason or f"handler of role {self.rt.spec.role!r} failed the run"
        if reason := check_decision(self.rt.workflow, outcome):
            return "rejected", reason
        item.decision = outcome
        if notes := getattr(item.context, "scratchpad", None):
            item.notes = dict(notes)
        return "done", Generation(text=decided_output(outcome), new_tokens=item.tokens, truncated=False)
