"""The dashboard's buttons go through the frontend to `pygmy up --control`: the admin token is required
there too, only the control endpoint's own routes pass, and its answers come back as they are."""

from __future__ import annotations

import requests

from support.cluster import Cluster


def test_the_proxy_refuses_callers_without_the_admin_token(web_cluster: Cluster) -> None:
    url = f"{web_cluster.frontend_url}/dashboard/api/control/nodes/catalog-0/kill"
    assert requests.post(url, timeout=10).status_code == 401
    wrong = requests.post(url, headers={"Authorization": "Bearer nope"}, timeout=10)
    assert wrong.status_code in (401, 403) and "error" in wrong.json()


def test_the_proxy_passes_only_control_routes(web_cluster: Cluster) -> None:
    base = f"{web_cluster.frontend_url}/dashboard/api/control"
    for tail in ("nodes/catalog-0/delete", "nodes/../../health", "other"):
        reply = requests.post(f"{base}/{tail}", headers=web_cluster.admin_headers(), timeout=10)
        assert reply.status_code == 404 and "error" in reply.json(), tail


def test_the_proxy_relays_the_control_endpoints_answers(web_cluster: Cluster) -> None:
    base = f"{web_cluster.frontend_url}/dashboard/api/control"
    nodes = requests.get(f"{base}/nodes", headers=web_cluster.admin_headers(), timeout=10).json()["nodes"]
    assert {n["name"] for n in nodes} >= {"frontend-0", "catalog-0", "order-2"}
    unknown = requests.post(f"{base}/nodes/catalog-9/kill", headers=web_cluster.admin_headers(), timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "unknown_node"
    load = requests.get(f"{base}/load", headers=web_cluster.admin_headers(), timeout=10).json()
    assert load["running"] is False


def test_without_netns_the_partition_routes_pass_and_answer_409(web_cluster: Cluster) -> None:
    base = f"{web_cluster.frontend_url}/dashboard/api/control"
    for method, tail in (("GET", "partitions"), ("DELETE", "partitions/catalog-0")):
        reply = requests.request(method, f"{base}/{tail}", headers=web_cluster.admin_headers(), timeout=10)
        assert reply.status_code == 409 and reply.json()["error"]["code"] == "no_netns", (tail, reply.text)
