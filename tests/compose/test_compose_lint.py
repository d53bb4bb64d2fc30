"""A plain lint of docker-compose.yml: the rules the compose stack must keep.

``docker-compose config -q`` runs too when a compose binary is installed; the structural
checks below run everywhere, so the file cannot silently lose its guarantees.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("planner", "researcher", "summarizer")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return doc


def test_compose_config_is_valid() -> None:
    if shutil.which("docker-compose"):
        cmd = ["docker-compose", "-f", "docker-compose.yml", "config", "-q"]
    elif shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:  # noqa: E501
        cmd = ["docker", "compose", "-f", "docker-compose.yml", "config", "-q"]
    else:
        cmd = []
    if cmd:
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]


def test_redis_has_aof_password_healthcheck_and_volume(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    command = " ".join(redis["command"]) if isinstance(redis["command"], list) else redis["command"]
    assert "--appendonly yes" in command and "--requirepass" in command
    assert "healthcheck" in redis and redis.get("volumes")


@pytest.mark.parametrize("role", ROLES)
def test_role_services_scale_and_stop_gracefully(compose: dict[str, Any], role: str) -> None:
    svc = compose["services"][role]
    assert "container_name" not in svc and "ports" not in svc
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert "stop_grace_period" in svc
    assert "--check" in svc["healthcheck"]["test"]
    command = svc["command"] if isinstance(svc["command"], list) else svc["command"].split()
    assert command[:2] == ["worker", role]
    env = svc["environment"]
    if not isinstance(env, dict):
        env = dict(e.split("=", 1) for e in env)
    url = env["REDIS_URL"]
    assert "@redis:6379" in url  # authenticated


def test_one_shot_seed_and_dashboard(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert "dashboard" in services
    seed = services["seed"]
    command = seed["command"] if isinstance(seed["command"], list) else seed["command"].split()
    assert command[0] == "submit" and "--wait" in command


def test_dockerfile_is_exec_form_non_root_and_offline() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["baton"]' in text
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1] not in {"root", "0"}
    assert "baton model build" in text and "HF_HUB_OFFLINE=1" in text
