"""A real local Redis Cluster (3 primaries + 3 replicas) shared by the cluster tests.

The cluster is started once per session (``LocalCluster``: six ``redis-server --cluster-enabled
yes`` processes joined by ``redis-cli --cluster create``) and flushed before each test.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from baton.broker import Keys, Redis, connect
from bench.localcluster import LocalCluster
from tests.conftest import Workers

PARTITIONS = 6
"""Two partitions per primary."""


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """One 3 + 3 cluster for the session (cluster-node-timeout 2000 ms)."""
    with LocalCluster(tmp_path_factory.mktemp("cluster")) as c:
        yield c


@pytest.fixture
def cluster_url(cluster: LocalCluster) -> str:
    """The cluster's ``redis+cluster://`` URL, every primary flushed."""
    cluster.flush()
    return cluster.url


@pytest.fixture
def cclient(cluster_url: str) -> Iterator[Redis]:
    """A cluster client (bytes responses)."""
    c = connect(cluster_url)
    yield c
    c.close()


@pytest.fixture
def ckeys() -> Keys:
    """Key names with ``PARTITIONS`` partitions."""
    return Keys("baton", PARTITIONS)


@pytest.fixture
def cluster_env(worker_env: dict[str, str], cluster_url: str) -> dict[str, str]:
    """Worker and CLI environment on the cluster, with ``PARTITIONS`` partitions and the echo model."""
    return {**worker_env, "REDIS_URL": cluster_url, "BATON_PARTITIONS": str(PARTITIONS), "BATON_MODEL": "echo"}


@pytest.fixture
def cworkers(cluster_env: dict[str, str], tmp_path: Path) -> Iterator[Workers]:
    """Worker processes on the cluster, killed at teardown."""
    w = Workers(cluster_env, tmp_path)
    yield w
    w.stop_all()
