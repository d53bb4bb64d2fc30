"""The soak's worker processes (``bench/soak.py``): a slot per role and index of each workflow, its
process restarted (SIGTERM) or killed (SIGKILL) and replaced, crashes reaped, and their RSS and CPU
measured across restarts."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from baton.agents.workflow.spec import SEED, Workflow
from bench.common import ROOT

__all__ = ["FANOUT", "Meter", "WorkerPool", "start_pool"]

log = logging.getLogger("baton.soak")

FANOUT = ROOT / "agents" / "workflow" / "shipped" / "research_fanout.toml"


@dataclass(slots=True)
class _Slot:
    name: str
    workflow: Workflow
    role: str
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    spawned: int = 0


@dataclass(slots=True)
class WorkerPool:
    """The soak's worker processes, one per slot, restarted, killed and reaped by slot."""

    log_dir: Path
    slots: list[_Slot] = field(default_factory=list)
    stopping: list[subprocess.Popen[bytes]] = field(default_factory=list)
    restarts: int = 0
    crashes: int = 0

    def spawn(self, slot: _Slot) -> None:
        slot.spawned += 1
        args = [sys.executable, "-m", "baton", "worker", slot.role]
        if slot.workflow is not SEED:
            args += ["--workflow", str(FANOUT)]
        with open(self.log_dir / f"worker-{slot.name}-{slot.spawned}.log", "wb") as out:
            slot.proc = subprocess.Popen(args, env=slot.env, stdout=out, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL)

    def restart(self, slot: _Slot) -> None:
        """SIGTERM the slot's worker (it finishes its batch and leaves) and start its replacement now."""
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.send_signal(signal.SIGTERM)
            self.stopping.append(slot.proc)
        self.restarts += 1
        self.spawn(slot)

    def kill_one(self, index: int) -> str:
        """SIGKILL a worker (the ``index``-th of a rotation apart from the restarts') and start its
        replacement now; return its slot's name."""
        slot = self.slots[(index * 5 + 1) % len(self.slots)]
        if slot.proc is not None and slot.proc.poll() is None:
            slot.proc.kill()
            slot.proc.wait()
        self.spawn(slot)
        return slot.name

    def reap(self) -> None:
        self.stopping = [p for p in self.stopping if p.poll() is None]
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is not None:
                log.warning("worker %s exited on its own with %s; restarted", slot.name, slot.proc.returncode)
                self.crashes += 1
                self.spawn(slot)

    def pids(self) -> dict[str, int]:
        return {s.name: s.proc.pid for s in self.slots if s.proc is not None and s.proc.poll() is None}

    def stop(self) -> None:
        procs = [s.proc for s in self.slots if s.proc is not None] + self.stopping
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(40)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()


class Meter:
    """Worker RSS and CPU, remembering each process so a CPU delta survives restarts."""

    def __init__(self) -> None:
        self.procs: dict[int, psutil.Process] = {}
        self.cpu: dict[int, float] = {}

    def rss(self, pids: dict[str, int]) -> dict[str, float]:
        out: dict[str, float] = {}
        for name, pid in pids.items():
            try:
                out[name] = self._proc(pid).memory_info().rss / 2**20
            except psutil.Error:
                continue
        return out

    def cpu_delta(self, pids: list[int]) -> float:
        total = 0.0
        for pid in set(pids) | set(self.cpu):
            try:
                t = self._proc(pid).cpu_times()
                now = t.user + t.system
            except psutil.Error:
                self.cpu.pop(pid, None)
                continue
            total += now - self.cpu.get(pid, 0.0)
            self.cpu[pid] = now
        return total

    def _proc(self, pid: int) -> psutil.Process:
        if pid not in self.procs:
            self.procs[pid] = psutil.Process(pid)
        return self.procs[pid]


def _twin() -> str:
    from baton.agents.backends import DEFAULT_MODEL, resolve_model

    return resolve_model(DEFAULT_MODEL)


def start_pool(workers: int, work: Path, env: dict[str, str], fanout: Workflow, fanout_model: str) -> WorkerPool:
    """Two pools of worker processes, each role ``workers`` times: the seed chain on the twin and
    ``fanout`` on ``fanout_model``; all started."""
    pool = WorkerPool(work)
    for wf, model in ((SEED, _twin()), (fanout, fanout_model)):
        for spec in wf.roles:
            for i in range(workers):
                name = f"{'seed' if wf is SEED else 'fanout'}.{spec.role}.{i}"
                pool.slots.append(_Slot(name, wf, spec.role, {**env, "BATON_MODEL": model}))
    for slot in pool.slots:
        pool.spawn(slot)
    return pool
