"""Without the ``baton[local]`` extra, an in-process model is a one-line error naming the extra.

The modules of the extra are hidden from a fresh interpreter (``sys.modules[name] = None`` makes
``import name`` fail as if it were not installed); ``make packaging-test`` checks the same on a
real light install (tests/packaging).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

HIDE = "import sys\nfor m in ('torch', 'transformers'): sys.modules[m] = None\n"


def _light(code: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", HIDE + code], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_echo_and_http_models_load_and_an_in_process_model_names_the_extra(worker_env: dict[str, str]) -> None:
    proc = _light(
        "from baton.agents.backends import load_backend, LocalModelsMissing\n"
        "print(type(load_backend('echo')).__name__, type(load_backend('http://127.0.0.1:9/v1')).__name__)\n"
        "try:\n    load_backend('sshleifer/tiny-gpt2')\n"
        "except LocalModelsMissing as exc:\n    print(exc)\n",
        worker_env,
    )
    assert proc.returncode == 0, proc.stderr
    backends, error = proc.stdout.splitlines()
    assert backends == "EchoBackend HTTPBackend"
    assert "torch, transformers" in error and "pip install 'baton[local]'" in error


def test_a_worker_on_the_twin_fails_with_one_line(worker_env: dict[str, str], twin: Path) -> None:
    proc = _light("from baton.agents.cli import main\nsys.exit(main(['worker', 'planner']))", worker_env)
    assert proc.returncode == 1
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.startswith(f"baton: error: model {str(twin)!r} runs in-process")
    assert "pip install 'baton[local]'" in proc.stderr


def test_baton_run_and_model_build_fail_before_starting_anything(worker_env: dict[str, str], tmp_path: Path) -> None:
    env = {**worker_env, "BATON_MODEL": "sshleifer/tiny-gpt2", "BATON_CACHE_DIR": str(tmp_path)}
    for args in (["run", "a task"], ["model", "build"]):
        proc = _light(f"from baton.agents.cli import main\nsys.exit(main({args!r}))", env)
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert proc.stderr.count("\n") == 1 and "baton[local]" in proc.stderr, (args, proc.stderr)
    assert not (tmp_path / "models").exists()
