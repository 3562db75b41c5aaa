"""The cluster across hosts: every node in its own network namespace at its own address, and partitions
made with iptables between them. Needs root (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Iterator

import pytest
import requests

from support.http import Api, ok_json
from support.polling import wait_for
from support.netns import NetnsCluster, unavailable_reason

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")
BUYS = 20


@pytest.fixture(scope="module")
def netns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    cluster = NetnsCluster(tmp_path_factory.mktemp("netns"))
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def pygmy_check(cluster: NetnsCluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pygmy", "check", "--config", str(cluster.config_path)],
        capture_output=True, text=True, timeout=120,
    )


def test_the_end_to_end_paths_work_with_every_node_on_its_own_host(netns_cluster: NetnsCluster) -> None:
    hosts = {n.host for n in netns_cluster.nodes}
    assert len(hosts) == len(netns_cluster.nodes) and "127.0.0.1" not in hosts
    api = Api(netns_cluster.frontend_url, netns_cluster.admin_token)
    assert {b["id"] for b in api.search("ds")["items"]} >= {1, 2}
    before = api.stock(1)
    order = api.bought(1)
    assert api.order(order["order_id"])["item"] == 1
    assert api.stock(1) == before - 1
    health = ok_json(api.get("/health"))
    assert health["status"] == "ok", health
    for node in netns_cluster.serving_nodes():
        assert requests.get(node.url + "/readyz", timeout=5).status_code == 200, node.name


def test_an_isolated_catalog_leader_commits_nothing_and_rejoins_after_the_heal(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(1, 100)
    orders_before = api.order_count()
    old, term = cluster.leader("catalog")
    old_name = f"catalog-{old}"
    followers = [f"catalog-{i}" for i in range(cluster.replicas) if i != old]
    cut_off_commit = cluster.status("catalog", old)["commit"]  # type: ignore[index]
    cluster.network.cut(old_name, followers)
    try:
        # At once, while the old leader may still think it leads: the frontend routes around it, and no
        # buy fails, none is lost or doubled.
        for _ in range(BUYS):
            api.bought(1)
        assert api.stock(1) == 100 - BUYS
        assert api.order_count() == orders_before + BUYS
        # The majority elected a leader of its own, in a later term.
        new = wait_for("a new leader", lambda: next((s for s in (cluster.status("catalog", int(f[-1])) for f in followers)
                                                     if s and s["role"] == "leader" and s["term"] > term), None), 30)
        # The old leader committed nothing after it was cut off, and serves no linearizable read.
        assert cluster.status("catalog", old)["commit"] == cut_off_commit  # type: ignore[index]
        read = requests.get(cluster.url("catalog", old) + "/internal/books/1", headers=cluster.secret_headers(), timeout=15)
        assert read.status_code == 503, read.text
        assert requests.get(cluster.url("catalog", old) + "/readyz", timeout=5).status_code == 503
    finally:
        cluster.network.heal(old_name)
    # Healed: it follows the new leader and converges.
    wait_for(f"{old_name} to catch up", lambda: (s := cluster.status("catalog", old)) and s["leader"] is not None
             and s["role"] == "follower" and s["applied"] >= new["commit"], 30)
    result = pygmy_check(cluster)
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_frontend_cut_from_each_tiers_leader_keeps_serving_through_the_followers(netns_cluster: NetnsCluster) -> None:
    cluster = netns_cluster
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(2, 50)
    orders_before = api.order_count()
    # The leaders are the replicas the frontend tries first; the followers forward to them.
    cut = [f"{kind}-{cluster.leader(kind)[0]}" for kind in ("catalog", "order")]
    cluster.network.cut("frontend-0", cut)
    try:
        for _ in range(10):
            api.bought(2)
            assert api.lookup(2)["id"] == 2
            assert api.search("ds")["items"]
        assert api.stock(2) == 40 and api.order_count() == orders_before + 10
    finally:
        cluster.network.heal("frontend-0")
    assert [f"{kind}-{cluster.leader(kind)[0]}" for kind in ("catalog", "order")] == cut  # no election was needed
