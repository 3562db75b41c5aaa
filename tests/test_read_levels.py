"""Read levels between tiers: linearizable on any replica by default, stale on request, never older than asked."""

from __future__ import annotations

import time

import pytest
import requests

from support.cluster import Cluster
from support.http import assert_error


def _get(cluster: Cluster, node_id: int, path: str) -> requests.Response:
    return requests.get(f"{cluster.url('catalog', node_id)}{path}", headers=cluster.secret_headers(), timeout=10)


def _restock(cluster: Cluster, node_id: int, item: int) -> requests.Response:
    return requests.post(f"{cluster.url('catalog', node_id)}/internal/apply", headers=cluster.secret_headers(),
                         json={"op": "update", "item": item, "stock_delta": 1}, timeout=10)


@pytest.fixture(autouse=True)
def _catalog_loaded(module_cluster: Cluster) -> None:
    """A fresh cluster loads its books through the log first; until then reads and writes answer `loading`."""
    deadline = time.monotonic() + 30
    while _get(module_cluster, 0, "/internal/books/1").status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_follower_s_default_read_reflects_every_write_acknowledged_before_it(module_cluster: Cluster) -> None:
    leader, _ = module_cluster.leader("catalog")
    follower = (leader + 1) % module_cluster.replicas
    for _ in range(50):
        written = _restock(module_cluster, leader, 5)
        assert written.status_code == 200 and written.json()["ok"], written.text
        # At once, on a follower: it may not even know the entry is committed yet, so it must ask the leader.
        read = _get(module_cluster, follower, "/internal/books/5")
        assert read.status_code == 200, read.text
        assert read.headers["X-Pygmy-Read"] == "linearizable"
        assert read.headers["X-Pygmy-Served-By"] == f"catalog-{follower}"
        assert read.json()["stock"] == written.json()["book"]["stock"], "a follower answered from before the write"
        assert int(read.headers["X-Pygmy-Index"]) >= int(written.headers["X-Pygmy-Index"])


def test_a_write_sent_to_a_follower_is_forwarded_to_the_leader(module_cluster: Cluster) -> None:
    leader, _ = module_cluster.leader("catalog")
    follower = (leader + 1) % module_cluster.replicas
    before = _get(module_cluster, leader, "/internal/books/6").json()["stock"]
    written = _restock(module_cluster, follower, 6)
    assert written.status_code == 200 and written.json()["book"]["stock"] == before + 1
    assert written.headers["X-Pygmy-Leader"] == module_cluster.url("catalog", leader)


def test_a_stale_read_is_served_locally_and_falls_back_when_its_bound_cannot_be_met(module_cluster: Cluster) -> None:
    leader, _ = module_cluster.leader("catalog")
    follower = (leader + 1) % module_cluster.replicas
    index = int(_restock(module_cluster, leader, 7).headers["X-Pygmy-Index"])
    at_index = _get(module_cluster, follower, f"/internal/books/7?consistency=stale&min_index={index}")
    assert at_index.headers["X-Pygmy-Read"] == "stale" and int(at_index.headers["X-Pygmy-Index"]) >= index
    fresh_enough = _get(module_cluster, follower, "/internal/books/7?consistency=stale&max_staleness=5")
    assert fresh_enough.headers["X-Pygmy-Read"] == "stale"
    # An index nobody has reached: after waiting a second it is served linearizably, not refused, not older.
    beyond = _get(module_cluster, follower, f"/internal/books/7?consistency=stale&min_index={index + 10**9}")
    assert beyond.status_code == 200 and beyond.headers["X-Pygmy-Read"] == "linearizable"


def test_a_malformed_read_level_is_a_400_that_says_so(module_cluster: Cluster) -> None:
    for query in ("consistency=eventual", "consistency=stale&min_index=-1", "consistency=stale&max_staleness=nan",
                  "min_index=3", "consistency=stale&max_staleness=0"):
        assert_error(_get(module_cluster, 0, f"/internal/books/1?{query}"), 400, "bad_consistency")
