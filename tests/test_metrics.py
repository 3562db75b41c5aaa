"""/metrics on every kind of node (Prometheus text format): request counts and latency histograms per route
and status, each replica's Raft role, term, commit and applied index, leader changes, proposals, fsync
latency and pending orders; counters move with traffic; every metric the shipped Grafana dashboard draws
exists on a live node (the cache's, listed in CACHE_METRICS, only once the cache is merged)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Iterator

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster, running_cluster
from support.http import Api

ROOT = Path(__file__).resolve().parents[1]
DASHBOARD = ROOT / "deploy" / "grafana" / "pygmy-dashboard.json"
PROMETHEUS = ROOT / "deploy" / "prometheus" / "prometheus.yml"
# The frontend cache's metrics: the dashboard must draw them (and, like every metric it draws, a node serves them).
CACHE_METRICS = {"pygmy_cache_hits_total", "pygmy_cache_misses_total", "pygmy_cache_invalidations_total",
                 "pygmy_cache_evictions_total", "pygmy_cache_lease_renewals_total"}

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    resp = requests.get(f"{url}/metrics", timeout=10)
    assert resp.status_code == 200 and resp.headers["Content-Type"].startswith("text/plain")
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(resp.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


def names(samples: Samples) -> set[str]:
    return {n for n, _ in samples}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("metrics"), replicas=1) as c:
        yield c


def test_the_frontend_counts_requests_and_times_them_per_route_and_status(cluster: Cluster) -> None:
    api = Api(cluster.frontend_url, cluster.admin_token)
    before = scrape(cluster.frontend_url)
    for _ in range(3):
        api.lookup(1)
    api.get("/lookup/999999")
    after = scrape(cluster.frontend_url)
    route = {"tier": "frontend", "route": "/lookup/{item}"}
    assert value(after, "pygmy_http_requests_total", **route, status="200") - value(before, "pygmy_http_requests_total", **route, status="200") == 3
    assert value(after, "pygmy_http_requests_total", **route, status="404") - value(before, "pygmy_http_requests_total", **route, status="404") == 1
    assert value(after, "pygmy_http_request_seconds_count", **route, status="200") - value(before, "pygmy_http_request_seconds_count", **route, status="200") == 3


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_a_replica_shows_its_raft_state_and_its_counters_move_with_buys(cluster: Cluster, kind: str) -> None:
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(1, 50)
    url = cluster.url(kind)
    me = {"tier": kind, "node": f"{kind}-0"}
    before = scrape(url)
    for _ in range(3):
        api.bought(1)
    after = scrape(url)
    assert value(after, "pygmy_raft_role", **me, role="leader") == 1 and value(after, "pygmy_raft_role", **me, role="follower") == 0
    assert value(after, "pygmy_raft_term", **me) >= 1
    assert value(after, "pygmy_raft_leader_changes_total", **me) >= 1, "its first leader is a change seen"
    for gauge in ("pygmy_raft_commit", "pygmy_raft_applied", "pygmy_raft_last_index"):
        assert value(after, gauge, **me) >= value(before, gauge, **me) + 3, gauge
    committed = {**me, "outcome": "committed"}
    assert value(after, "pygmy_raft_proposals_total", **committed) >= value(before, "pygmy_raft_proposals_total", **committed) + 3
    assert value(after, "pygmy_raft_fsync_seconds_count", **me) > value(before, "pygmy_raft_fsync_seconds_count", **me)
    assert value(after, "pygmy_raft_fsync_seconds_sum", **me) > 0
    if kind == "order":
        assert ("pygmy_orders_pending", frozenset(me.items())) in after and value(after, "pygmy_orders_pending", **me) == 0


def test_every_metric_the_grafana_dashboard_draws_exists_on_a_live_node(cluster: Cluster) -> None:
    Api(cluster.frontend_url, cluster.admin_token).bought(1)  # so the order tier's buy counters have series
    live: set[str] = set()
    for node in cluster.serving_nodes():
        live |= names(scrape(node.url))
    exprs = [t["expr"] for panel in json.loads(DASHBOARD.read_text())["panels"] for t in panel["targets"]]
    used = {re.sub(r"_(bucket|count|sum)$", "", m) for e in exprs for m in re.findall(r"\bpygmy_[a-z_]+", e)}
    live |= {re.sub(r"_(bucket|count|sum)$", "", m) for m in live}
    missing = used - live
    assert not missing, f"the dashboard draws metrics no node serves: {sorted(missing)}"
    assert used & CACHE_METRICS == CACHE_METRICS, "the dashboard shows the cache's metrics"


def test_the_prometheus_configuration_scrapes_every_node_of_the_default_cluster() -> None:
    from pygmy.config import load

    text = PROMETHEUS.read_text()
    for node in load().nodes:
        assert f'"{node.host}:{node.port}"' in text, node.name
