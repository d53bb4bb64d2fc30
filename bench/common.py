"""Shared pieces of the benchmark: prompts, statistics, process memory, machine description."""

from __future__ import annotations

import os
import platform
import signal
import statistics
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = [
    "ROOT",
    "TOPICS",
    "bench_model",
    "cpu_seconds",
    "machine",
    "percentile",
    "rss_mib",
    "stop_procs",
    "spread",
    "uss_mib",
    "task_text",
    "worker_base_env",
]

ROOT = Path(__file__).resolve().parent.parent

TOPICS = (
    "Explain the importance of supervised learning.",
    "Compare gradient descent with stochastic gradient descent.",
    "Describe what overfitting is and how to avoid it.",
    "Explain how attention works in transformers.",
    "Summarize the bias-variance trade-off.",
    "Explain why we normalise input features.",
    "Describe the role of a validation set.",
    "Explain what a learning rate schedule does.",
)


def task_text(i: int) -> str:
    """The initial task of run ``i``; every configuration uses the same list."""
    return TOPICS[i % len(TOPICS)]


def percentile(values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) by linear interpolation; NaN for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def spread(values: Sequence[float]) -> tuple[float, float, float]:
    """(min, median, max) of the repeats; NaNs for none."""
    vals = [v for v in values if v == v]
    if not vals:
        nan = float("nan")
        return nan, nan, nan
    return min(vals), statistics.median(vals), max(vals)


def uss_mib(pid: int) -> float:
    """Unique set size of ``pid`` in MiB: what one more such process adds (shared pages excluded)."""
    import psutil

    try:
        return float(psutil.Process(pid).memory_full_info().uss) / 2**20
    except psutil.Error:
        return float("nan")


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by the processes ``pids`` (threads included)."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            t = psutil.Process(pid).cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def rss_mib(pid: int, *, children: bool = False) -> tuple[float, float]:
    """(current RSS, peak RSS = VmHWM) in MiB of ``pid`` (plus its children when asked)."""
    import psutil

    procs = [psutil.Process(pid)]
    if children:
        procs += psutil.Process(pid).children(recursive=True)
    now = peak = 0.0
    for p in procs:
        try:
            now += p.memory_info().rss / 2**20
            status = Path(f"/proc/{p.pid}/status").read_text()
        except (psutil.Error, OSError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peak += int(line.split()[1]) / 1024
    return now, peak


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _ram_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return float("nan")


def _version(module: str) -> str:
    try:
        mod = __import__(module)
        return str(getattr(mod, "__version__", "?"))
    except ImportError:
        return "not installed"


def machine() -> dict[str, str]:
    """What this machine and environment are, for the report."""
    from baton.broker import find_redis_server

    try:
        redis_v = subprocess.run([find_redis_server(), "--version"], capture_output=True, text=True,
                                 check=False).stdout.strip()
    except (OSError, FileNotFoundError) as exc:
        redis_v = f"unknown ({exc})"
    versions = {m: _version(m) for m in ("torch", "transformers", "redis", "celery", "msgspec")}
    return {
        "nproc": str(os.cpu_count()),
        "cpu": _cpu_model(),
        "ram": f"{_ram_gib():.1f} GiB",
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "redis-server": redis_v,
        **{k: v for k, v in versions.items()},
    }


def stop_procs(procs: Sequence[subprocess.Popen[bytes]], grace_s: float = 20.0) -> None:
    """SIGTERM every live process of ``procs``, wait ``grace_s`` for each, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(grace_s)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def worker_base_env(redis_url: str, tmp: str | Path) -> dict[str, str]:
    """The environment a bench's worker processes start from: this process's without ``BATON_*``,
    on ``redis_url``, offline, with the model cache of ``BATON_CACHE_DIR`` (else under ``tmp``)."""
    cache = os.environ.get("BATON_CACHE_DIR") or str(Path(tmp) / "cache")
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({"REDIS_URL": redis_url, "BATON_CACHE_DIR": cache, "HF_HUB_OFFLINE": "1",
                "TOKENIZERS_PARALLELISM": "false"})
    return env


def bench_model(name: str, env: dict[str, str]) -> str:
    """``BATON_MODEL`` for a bench's model ``name``: ``echo``, else the twin of tiny-gpt2 (built
    offline into ``env``'s model cache on first use)."""
    if name == "echo":
        return "echo"
    from baton.agents.backends.twin import build_twin  # torch: only when the twin is asked for

    return str(build_twin(Path(env["BATON_CACHE_DIR"]) / "models" / "tiny-gpt2-twin"))
