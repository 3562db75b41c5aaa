"""Fixtures for the end-to-end tests: real clusters of real processes on loopback ports.

- `cluster` / `api`: one cluster for the whole session, default catalog; tests on it only read, or
  change state relative to what they read first.
- `module_cluster` / `module_api`: a cluster per test module, for modules that kill nodes or need
  exact stock; every test starts with all serving nodes running again.
- `make_cluster`: a fresh cluster per call (own catalog, `pygmy up`, --data-dir), stopped after the test.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import pytest

from support.cluster import Cluster, running_cluster
from support.http import Api


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("session-cluster")) as c:
        yield c


@pytest.fixture(scope="session")
def api(cluster: Cluster) -> Api:
    return Api(cluster.frontend_url, cluster.admin_token)


@pytest.fixture(scope="module")
def _module_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("module-cluster")) as c:
        yield c


@pytest.fixture
def module_cluster(_module_cluster: Cluster) -> Cluster:
    _module_cluster.ensure_running()
    return _module_cluster


@pytest.fixture
def module_api(module_cluster: Cluster) -> Api:
    return Api(module_cluster.frontend_url, module_cluster.admin_token)


@pytest.fixture
def make_cluster(tmp_path: Path) -> Iterator[Callable[..., Cluster]]:
    started: list[Cluster] = []

    def make(name: str = "cluster", **options: object) -> Cluster:
        c = Cluster(tmp_path / name, **options)  # type: ignore[arg-type]
        started.append(c)
        return c.start()

    yield make
    for c in started:
        c.stop()
