"""A plain lint of docker-compose.yml: the rules the compose stack must keep.

``docker-compose config -q`` runs too when a compose binary is installed; the structural
checks below run everywhere, so the file cannot silently lose its guarantees.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLES = ("planner", "researcher", "summarizer")
URL_HOST = re.compile(r"https?://([A-Za-z0-9.-]+\.[A-Za-z]{2,})")
# Loopback, reserved example/test names, compose service names and the SVG namespace are fine.
ALLOWED_HOST = re.compile(r"(^|\.)(example\.(com|org|net)|test|localhost|invalid)$|^www\.w3\.org$")


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


def test_an_admin_job_loads_the_functions_library_before_workers_start(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["setup"]["command"] == ["setup"] and services["setup"]["restart"] == "no"
    for name in (*ROLES, "dashboard"):
        assert services[name]["depends_on"]["setup"]["condition"] == "service_completed_successfully", name
    cluster = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())["services"]["setup"]
    assert "redis-cluster-init" in cluster["depends_on"] and "redis+cluster://" in cluster["environment"]["REDIS_URL"]


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


def default_of(value: str) -> str:
    """The default of a ``${VAR:-default}`` reference (the value itself when it is literal)."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
    return match.group(2) if match else value


def test_default_images_are_the_public_ones(compose: dict[str, Any]) -> None:
    assert default_of(compose["services"]["redis"]["image"]) == "redis:7"
    builds = [svc["build"] for svc in compose["services"].values() if "build" in svc]
    assert builds and {default_of(b["args"]["BASE_IMAGE"]) for b in builds} == {"python:3.11-slim"}
    assert "ARG BASE_IMAGE=python:3.11-slim" in (ROOT / "Dockerfile").read_text().splitlines()


def test_air_gapped_images_are_chosen_by_variables() -> None:
    script = (ROOT / "docker" / "compose-test.sh").read_text()
    assert "export BATON_BASE_IMAGE=${BATON_BASE_IMAGE:-baton-base:bookworm}" in script
    assert "export BATON_REDIS_IMAGE=${BATON_REDIS_IMAGE:-baton-redis:bookworm}" in script
    text = (ROOT / "docker-compose.yml").read_text()
    assert "${BATON_BASE_IMAGE:-" in text and "${BATON_REDIS_IMAGE:-" in text


def test_published_ports_are_on_loopback_only(compose: dict[str, Any]) -> None:
    published = [(name, port) for name, svc in compose["services"].items() for port in svc.get("ports", [])]
    assert published, "the dashboard is published"
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_torch_index_has_no_default_host() -> None:
    args = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("ARG TORCH_INDEX_URL")]
    assert args == ["ARG TORCH_INDEX_URL="]


def test_no_registry_or_mirror_hosts_in_the_repository() -> None:
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, text=True)
    if tracked.returncode != 0:  # not a git checkout (e.g. an unpacked sdist): read the tree
        files = [p for p in ROOT.rglob("*") if p.is_file() and ".git" not in p.parts]
    else:
        files = [ROOT / name for name in tracked.stdout.split("\0") if name]
    hosts = set()
    for path in files:
        if not path.is_file() or path.suffix in {".png", ".whl", ".tar"}:
            continue
        for host in URL_HOST.findall(path.read_text(errors="replace")):
            if not ALLOWED_HOST.search(host):
                hosts.add(f"{path.relative_to(ROOT)}: {host}")
    assert sorted(hosts) == []
