"""Public liveness and readiness probes (/livez, /readyz): what an orchestrator may ask without a secret.

Readiness means "send me traffic now": a replica only once its group has a leader and it has applied what
that leader had committed when asked (rqlite's /readyz?sync), a frontend only while both groups have a
leader. Neither route reveals anything about the cluster to whoever asks.
"""

from __future__ import annotations

import time

import requests

from support.cluster import Cluster

PROBE_TIMEOUT = 5.0


def probe(url: str, route: str) -> requests.Response:
    return requests.get(url + route, timeout=PROBE_TIMEOUT)


def wait_for_status(url: str, route: str, status: int, timeout: float = 20.0) -> requests.Response:
    deadline = time.monotonic() + timeout
    while True:
        resp = probe(url, route)
        if resp.status_code == status or time.monotonic() > deadline:
            return resp
        time.sleep(0.1)


def test_every_node_is_alive_and_ready_and_says_nothing_else(module_cluster: Cluster) -> None:
    for node in module_cluster.serving_nodes():
        for route, word in (("/livez", "alive"), ("/readyz", "ready")):
            resp = wait_for_status(node.url, route, 200)
            assert resp.status_code == 200, (node.name, route, resp.text)
            # No secret was sent, so nothing but the verdict: no names, indices, terms or addresses.
            assert resp.json() == {"status": word}, (node.name, route, resp.text)


def test_without_a_catalog_majority_the_frontend_and_the_survivor_are_not_ready(module_cluster: Cluster) -> None:
    survivor = 0
    for i in (1, 2):
        module_cluster.kill("catalog", i)
    for url in (module_cluster.frontend_url, module_cluster.url("catalog", survivor)):
        resp = wait_for_status(url, "/readyz", 503)
        assert resp.status_code == 503, (url, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "not_ready" and "catalog-" not in error["message"], resp.text
        # Alive all the same: restarting it would not bring the majority back.
        assert probe(url, "/livez").status_code == 200
    # The order group kept its leader: its replicas stay ready.
    assert probe(module_cluster.url("order", 0), "/readyz").status_code == 200
    for i in (1, 2):
        module_cluster.start_node("catalog", i)
    for url in (module_cluster.frontend_url, module_cluster.url("catalog", survivor)):
        assert wait_for_status(url, "/readyz", 200).status_code == 200
