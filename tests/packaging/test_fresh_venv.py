"""baton as a user installs it: the built wheel in a fresh venv, next to the OpenAI Agents SDK.

``make packaging-test`` (marker ``packaging``, not in the default run). The module builds the
wheel with ``pip wheel``, creates a new venv (no system site-packages, no editable link tree,
run from a temporary directory so the checkout's ``agents/`` folder is not on ``sys.path``),
installs the wheel with its dependencies alone (a light install: no torch) and checks that the
seed run works on an HTTP model there while an in-process model is a one-line error naming the
``baton[local]`` extra; then installs ``baton[local]`` and ``openai-agents`` (torch pinned by
constraints.txt to the local CPU build) and checks that:

- ``import agents`` is the OpenAI Agents SDK (baton installs only under ``baton``);
- ``import baton`` and ``baton.agents.runtime.worker`` import from the venv;
- ``baton --help`` works and the data files (Lua, dashboard, shipped workflow) are installed;
- the seed run works: ``baton model build`` makes the offline twin, ``baton run`` runs the
  notebook's chain on it with baton's own embedded Redis.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

pytestmark = [pytest.mark.packaging, pytest.mark.timeout(2400)]

ROOT = Path(__file__).resolve().parents[2]
SEED_TASK = "Explain the importance of supervised learning."
DATA_FILES = (
    "baton/broker/lua/commit.lua",
    "baton/broker/lua/join.lua",
    "baton/agents/ops/static/dashboard.html",
    "baton/agents/workflow/shipped/research_fanout.toml",
    "baton/agents/workflow/shipped/kb/supervised-learning.txt",
    "baton/py.typed",
)


@dataclass
class FreshVenv:
    """The venv, the wheel installed into it, its clean environment and how long each step took."""

    root: Path
    wheel: Path
    workdir: Path
    env: dict[str, str]
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def python(self) -> Path:
        return self.root / "bin" / "python"

    @property
    def site_packages(self) -> Path:
        return next((self.root / "lib").glob("python3*/site-packages"))

    def run(self, *args: str | Path, timeout: float = 600, **env: str) -> subprocess.CompletedProcess[str]:
        """Run a command in the venv's environment from a directory outside the checkout."""
        proc = subprocess.run(
            [str(a) for a in args],
            cwd=self.workdir,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc

    def py(self, code: str) -> str:
        return self.run(self.python, "-c", code).stdout.strip()


def clean_env(venv: Path, cache: Path) -> dict[str, str]:
    """The parent's environment without anything that points at the dev venv, a Redis or baton's settings."""
    drop = {"PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "REDIS_URL", "PYTEST_CURRENT_TEST"}
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("BATON_")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env.update(BATON_CACHE_DIR=str(cache), HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", COLUMNS="200")
    return env


@pytest.fixture(scope="module")
def light(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[FreshVenv]:
    base = tmp_path_factory.mktemp("packaging")
    workdir = base / "work"
    workdir.mkdir()
    env = clean_env(base / "venv", base / "cache")
    timings: dict[str, float] = {}
    start = time.monotonic()

    t = time.monotonic()
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist), str(ROOT)],
        check=True, cwd=workdir, env=env, capture_output=True, text=True,
    )
    (wheel,) = dist.glob("baton-*.whl")
    timings["build wheel"] = time.monotonic() - t

    t = time.monotonic()
    subprocess.run([sys.executable, "-m", "venv", str(base / "venv")], check=True, cwd=workdir, env=env)
    venv = FreshVenv(base / "venv", wheel, workdir, env, timings)
    timings["create venv"] = time.monotonic() - t

    t = time.monotonic()
    venv.run(venv.python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt", wheel, timeout=1800)
    timings["pip install wheel + deps (light)"] = time.monotonic() - t
    yield venv

    timings["total"] = time.monotonic() - start
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():  # the timings reach the terminal even under -q
        print()
        for name, seconds in timings.items():
            print(f"packaging: {name}: {seconds:.1f}s")


@pytest.fixture(scope="module")
def fresh(light: FreshVenv) -> FreshVenv:
    """The light venv after ``pip install 'baton[local]'`` (in-process models) and openai-agents."""
    t = time.monotonic()
    light.run(light.python, "-m", "pip", "install", "-q", "-c", ROOT / "constraints.txt",
              f"baton[local] @ {light.wheel.as_uri()}", "openai-agents", timeout=1800)
    light.timings["pip install baton[local] + openai-agents"] = time.monotonic() - t
    return light


def test_a_light_install_runs_an_http_model_without_torch(light: FreshVenv) -> None:
    """``pip install baton`` (no extra): no torch; the seed run on an HTTP model; the twin names the extra."""
    assert light.py("import importlib.util as u; print([u.find_spec(m) for m in ('torch', 'transformers')])") \
        == "[None, None]"
    port = _free_port()
    log = light.workdir / "serve-model.log"
    with open(log, "wb") as out:
        server = subprocess.Popen([light.root / "bin" / "baton", "serve-model", "--model", "echo", "--port", str(port)],
                                  cwd=light.workdir, env=light.env, stdout=out, stderr=subprocess.STDOUT)
    try:
        _wait_healthy(f"http://127.0.0.1:{port}/health", server, log)
        out = light.run(light.root / "bin" / "baton", "run", SEED_TASK, BATON_MODEL=f"http://127.0.0.1:{port}/v1").stdout
    finally:
        server.terminate()
        server.wait(30)
    for line in ("Planner output:", "Researcher output:", "Summarizer output:"):
        assert line in out
    refused = subprocess.run([light.root / "bin" / "baton", "model", "build"], cwd=light.workdir, env=light.env,
                             capture_output=True, text=True, timeout=120)
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1, refused.stderr
    assert "pip install 'baton[local]'" in refused.stderr


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    import urllib.request

    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{url} did not answer: {log.read_text()}")


def test_wheel_holds_only_baton_and_its_data(fresh: FreshVenv) -> None:
    names = zipfile.ZipFile(fresh.wheel).namelist()
    tops = {name.split("/", 1)[0] for name in names}
    assert tops == {"baton", fresh.wheel.name.split("-py3")[0] + ".dist-info"}, tops
    assert set(DATA_FILES) <= set(names)
    assert not [n for n in names if "localcluster" in n]  # test and bench infrastructure (bench/)


def test_agents_is_the_openai_sdk(fresh: FreshVenv) -> None:
    code = (
        "import agents, importlib.metadata as md\n"
        "from agents import Agent, Runner\n"
        "owned = {str(f.locate()) for f in md.files('openai-agents')}\n"
        "print(agents.__file__ in owned, Agent.__module__, Runner.__module__)\n"
        "print(agents.__file__)"
    )
    owned, agent_mod, runner_mod, path = fresh.py(code).split()
    assert owned == "True"
    assert Path(path) == fresh.site_packages / "agents" / "__init__.py"
    assert agent_mod.startswith("agents.") and runner_mod.startswith("agents.")


def test_baton_imports_from_the_venv(fresh: FreshVenv) -> None:
    code = (
        "import baton, baton.agents.runtime.worker as w, baton.broker, baton.protocol\n"
        "print(baton.__file__)\nprint(w.Worker.__name__)"
    )
    path, worker = fresh.py(code).splitlines()
    assert Path(path) == fresh.site_packages / "baton" / "__init__.py"
    assert worker == "Worker"
    for rel in DATA_FILES:
        assert (fresh.site_packages / rel).is_file(), rel


def test_dependencies_are_consistent(fresh: FreshVenv) -> None:
    fresh.run(fresh.python, "-m", "pip", "check")
    torch = fresh.py("import torch; print(torch.__version__, torch.version.cuda)")
    assert torch.split() == ["2.13.0+cpu", "None"]


def test_cli_help(fresh: FreshVenv) -> None:
    for cmd in ([fresh.root / "bin" / "baton", "--help"], [fresh.python, "-m", "baton", "--help"]):
        out = fresh.run(*cmd).stdout
        assert "run" in out and "worker" in out and "submit" in out


def test_seed_run_on_the_offline_twin(fresh: FreshVenv) -> None:
    t = time.monotonic()
    twin = Path(fresh.env["BATON_CACHE_DIR"]) / "models" / "tiny-gpt2-twin"  # the documented place
    assert str(twin) in fresh.run(fresh.root / "bin" / "baton", "model", "build").stdout
    assert (twin / "config.json").is_file()
    out = fresh.run(fresh.root / "bin" / "baton", "run", SEED_TASK, BATON_MODEL=str(twin)).stdout
    fresh.timings["baton model build + baton run"] = time.monotonic() - t
    for line in ("Planner output:", "Researcher output:", "Summarizer output:"):
        assert line in out
    assert f"Planner agent named Alice. Task: {SEED_TASK}" in out
    assert "Summarizer agent named Eve. Task: Summarize key points: Researcher agent named Bob." in out
