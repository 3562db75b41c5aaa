"""What operators see: /health for every node, Server-Timing per tier on every reply, Prometheus /metrics."""

from __future__ import annotations

import pytest

from support.cluster import Cluster
from support.http import Api, ok_json, server_timing


def test_health_names_every_node_of_the_configuration_once(cluster: Cluster, api: Api) -> None:
    health = ok_json(api.get("/health"))
    listed = {(n["kind"], n["id"]): n for n in health["nodes"]}
    assert len(listed) == len(health["nodes"]), "no node may be listed twice"
    assert set(listed) == {(n.kind, n.id) for n in cluster.nodes}
    for spec in cluster.nodes:
        assert listed[(spec.kind, spec.id)]["url"].rstrip("/") == spec.url


def test_health_is_ok_with_the_serving_nodes_up_and_the_other_replicas_not_up(cluster: Cluster, api: Api) -> None:
    health = ok_json(api.get("/health"))
    assert health["status"] == "ok"
    serving = {(n.kind, n.id) for n in cluster.serving_nodes()}
    for node in health["nodes"]:
        expected = {"up"} if (node["kind"], node["id"]) in serving else {"standby", "down"}
        assert node["status"] in expected, node


@pytest.mark.parametrize(
    "method, path, tiers",
    [
        ("GET", "/lookup/1", {"frontend", "catalog"}),
        ("GET", "/lookup?item=2", {"frontend", "catalog"}),
        ("GET", "/search/ds", {"frontend", "catalog"}),
        ("GET", "/search?topic=gs", {"frontend", "catalog"}),
        ("POST", "/buy/1", {"frontend", "order", "catalog"}),
        ("GET", "/buy?item=1", {"frontend", "order", "catalog"}),
        ("GET", "/orders", {"frontend", "order"}),
        ("GET", "/orders/1", {"frontend", "order"}),
        ("GET", "/health", {"frontend"}),
        ("GET", "/lookup/999", {"frontend", "catalog"}),  # errors from downstream carry its timing too
        ("GET", "/lookup/abc", {"frontend"}),
        ("GET", "/no/such/route", {"frontend"}),
    ],
)
def test_server_timing_names_each_tier_that_worked_on_the_request(api: Api, method: str, path: str, tiers: set) -> None:
    api.set_stock(1, 50)
    api.bought(1)  # so /orders/1 exists whichever test ran first
    resp = api.request(method, path)
    timings = server_timing(resp)
    if resp.headers.get("X-Pygmy-Cache") == "hit":
        # Answered from the frontend's cache: no other tier worked on it, and the timing says so.
        assert set(timings) == {"frontend"}, resp.headers["Server-Timing"]
        tiers = {"frontend"}
    assert tiers <= set(timings), f"{path}: {resp.headers['Server-Timing']}"
    assert len(timings["frontend"]) == 1
    # A tier's time includes its downstream calls, so the frontend's covers everyone else's.
    frontend = timings["frontend"][0]
    for tier, durations in timings.items():
        assert all(d >= 0 for d in durations)
        assert tier == "frontend" or max(durations) <= frontend, resp.headers["Server-Timing"]


def test_buy_timing_nests_catalog_inside_order_inside_frontend(api: Api) -> None:
    api.set_stock(1, 10)
    timings = server_timing(api.buy(1))
    assert max(timings["catalog"]) <= timings["order"][0] <= timings["frontend"][0]


def test_metrics_are_prometheus_text_counting_requests(api: Api) -> None:
    api.lookup(1)
    resp = api.get("/metrics")
    assert resp.status_code == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "# TYPE " in resp.text and "# HELP " in resp.text
    assert "pygmy_http_requests_total" in resp.text
    assert "Server-Timing" in resp.headers
