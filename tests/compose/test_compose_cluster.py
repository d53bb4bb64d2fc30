"""Lint of docker-compose.cluster.yml, the 3+3 Redis Cluster override of docker-compose.yml.

``docker-compose config -q`` with both files runs when a compose binary is installed; the
structural checks run everywhere.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.compose.test_compose_lint import default_of

ROOT = Path(__file__).resolve().parents[2]
FILES = ("docker-compose.yml", "docker-compose.cluster.yml")
BATON_SERVICES = ("planner", "researcher", "summarizer", "dashboard", "seed")
NODES = [f"redis-node-{n}" for n in range(1, 7)]


@pytest.fixture(scope="module")
def cluster() -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.cluster.yml").read_text())
    return doc


def _compose_cmd() -> list[str]:
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return []


def _command(svc: dict[str, Any]) -> str:
    cmd = svc["command"]
    return " ".join(cmd) if isinstance(cmd, list) else str(cmd)


def test_both_files_make_a_valid_config(cluster: dict[str, Any]) -> None:
    cmd = _compose_cmd()
    if cmd:
        files = [arg for f in FILES for arg in ("-f", f)]
        proc = subprocess.run([*cmd, *files, "config", "-q"], cwd=ROOT, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
    assert set(NODES) <= set(cluster["services"])


@pytest.mark.parametrize("node", NODES)
def test_nodes_are_cluster_enabled_persistent_authenticated_and_unpublished(cluster: dict[str, Any],
                                                                            node: str) -> None:
    svc = cluster["services"][node]
    command = _command(svc)
    assert "--cluster-enabled yes" in command and "--appendonly yes" in command
    assert "--requirepass" in command and "--masterauth" in command
    assert "healthcheck" in svc and svc.get("volumes") and "ports" not in svc
    assert default_of(svc["image"]) == "redis:7" and "${BATON_REDIS_IMAGE:-" in svc["image"]


def test_init_job_creates_three_primaries_with_a_replica_each(cluster: dict[str, Any]) -> None:
    init = cluster["services"]["redis-cluster-init"]
    command = _command(init)
    assert "--cluster create" in command and "--cluster-replicas 1" in command and "--cluster-yes" in command
    assert all(node in command for node in NODES)
    assert {n: c["condition"] for n, c in init["depends_on"].items()} == dict.fromkeys(NODES, "service_healthy")
    assert init["restart"] == "no"


@pytest.mark.parametrize("name", BATON_SERVICES)
def test_baton_services_use_the_cluster_url_after_the_init_job(cluster: dict[str, Any], name: str) -> None:
    svc = cluster["services"][name]
    url = svc["environment"]["REDIS_URL"]
    assert url.startswith("redis+cluster://:${REDIS_PASSWORD:-") and "@redis-node-1:6379" in url
    assert svc["depends_on"]["redis-cluster-init"]["condition"] == "service_completed_successfully"
    assert "ports" not in svc


def test_nothing_published_beyond_loopback(cluster: dict[str, Any]) -> None:
    for name, svc in cluster["services"].items():
        for port in svc.get("ports", []):
            assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)


def test_compose_test_runs_the_cluster_phase_on_both_files() -> None:
    phase1 = (ROOT / "docker" / "compose-test.sh").read_text()
    assert '"$ROOT/docker/compose-cluster-test.sh"' in phase1
    script = ROOT / "docker" / "compose-cluster-test.sh"
    text = script.read_text()
    assert '-f "$ROOT/docker-compose.yml" -f "$ROOT/docker-compose.cluster.yml"' in text
    assert "trap teardown EXIT" in text and "down -v" in text
    assert "cluster_state:ok" in text and "redis-cluster-init" in text
    assert subprocess.run(["bash", "-n", str(script)], capture_output=True).returncode == 0
