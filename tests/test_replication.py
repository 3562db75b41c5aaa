"""Replicated tiers as an operator meets them: leadership handed over on SIGTERM, any odd group size."""

from __future__ import annotations

import shutil
import signal
import time
from typing import Callable

import pytest
import requests

from support.cluster import Cluster
from support.http import Api


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_a_leader_stopped_with_sigterm_hands_over_before_it_exits(make_cluster: Callable[..., Cluster], kind: str) -> None:
    cluster = make_cluster(f"handover-{kind}")
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(1, 10)
    leader, term = cluster.leader(kind)
    proc = cluster.procs[f"{kind}-{leader}"]
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(10) == 0
    # Asked the moment the old leader is gone: a follower already leads, in the next term. After a plain
    # crash the followers would still wait out an election timeout (150-300 ms) before anyone stood.
    others = [cluster.status(kind, i) for i in range(cluster.replicas) if i != leader]
    leaders = [s for s in others if s and s["role"] == "leader"]
    assert len(leaders) == 1 and leaders[0]["term"] == term + 1, others
    assert "handed leadership to" in cluster.log(f"{kind}-{leader}")
    assert api.bought(1)["item"] == 1
    cluster.start_node(kind, leader)
    assert api.stock(1) == 9


def test_a_group_of_five_serves_and_survives_two_crashes(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster("five", replicas=5)
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(2, 10)
    for kind in ("catalog", "order"):
        first, _ = cluster.leader(kind)
        cluster.kill(kind, first)
        second, _ = cluster.leader(kind)
        cluster.kill(kind, second)  # two of five down: the majority of three still serves
    assert api.bought(2)["item"] == 2
    assert api.stock(2) == 9
    status = api.get("/health").json()
    assert status["status"] == "degraded"
    assert {g: (v["replicas"], v["up"]) for g, v in status["groups"].items()} == {"catalog": (5, 3), "order": (5, 3)}


def test_a_wiped_replica_is_rebuilt_from_the_leader_s_snapshot_of_its_sqlite_state(make_cluster: Callable[..., Cluster]) -> None:
    # Snapshots every 20 entries: the log the wiped replica needs is compacted away, so only
    # InstallSnapshot (of the SQLite machine's dump) can rebuild it.
    cluster = make_cluster("snapshot", raft={"snapshot_every": 20})
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(3, 500)
    leader, _ = cluster.leader("catalog")
    victim = (leader + 1) % cluster.replicas
    cluster.kill("catalog", victim)
    shutil.rmtree(cluster.data_dir / f"catalog-{victim}")
    orders = [api.bought(3)["order_id"] for _ in range(60)]
    for item in (1, 2):
        api.update(item, {"stock_delta": 7})
    leader_status = cluster.status("catalog", cluster.leader("catalog")[0])
    assert leader_status and leader_status["snapshot_index"] > 0, "the leader compacted its log"
    cluster.start_node("catalog", victim, join=True)
    deadline = time.monotonic() + 20
    while True:
        mine, theirs = cluster.status("catalog", victim), cluster.status("catalog", cluster.leader("catalog")[0])
        if mine and theirs and mine["applied"] >= theirs["commit"] and mine["role"] == "follower":
            break
        assert time.monotonic() < deadline, f"catalog-{victim} did not catch up: {mine} vs {theirs}"
        time.sleep(0.1)
    assert mine["snapshot_index"] > 0, "it was rebuilt from a snapshot, not by replaying the log"
    stale = requests.get(f"{cluster.url('catalog', victim)}/internal/books/3?consistency=stale",
                         headers=cluster.secret_headers(), timeout=5)
    assert stale.json()["stock"] == 500 - len(orders)
    # Its whole state, not just one book: the same digest as every other replica at one log position.
    digest = requests.post(f"{cluster.url('catalog', 0)}/internal/digest", headers=cluster.secret_headers(), timeout=10).json()
    hashes = {requests.get(f"{cluster.url('catalog', i)}/internal/digest/{digest['id']}", headers=cluster.secret_headers(),
                           timeout=10).json()["hash"] for i in range(cluster.replicas)}
    assert hashes == {digest["hash"]}
