"""When a tier is down (kill -9), the frontend answers 503 with Retry-After, changes nothing, and recovers."""

from __future__ import annotations

import pytest

from support.cluster import Cluster
from support.http import Api, assert_error

CATALOG_ROUTES = [
    ("GET", "/lookup/1"),
    ("GET", "/lookup?item=1"),
    ("GET", "/search/ds"),
    ("GET", "/search?topic=gs"),
]
ORDER_ROUTES = [("GET", "/orders"), ("GET", "/orders/1"), ("POST", "/buy/1"), ("POST", "/buy?item=1"), ("GET", "/buy?item=1")]


def _health(api: Api) -> dict:
    resp = api.get("/health")
    assert resp.status_code in (200, 503), resp.text
    return resp.json()


def _status_of(health: dict, kind: str, node_id: int = 0) -> str:
    return next(n["status"] for n in health["nodes"] if n["kind"] == kind and n["id"] == node_id)


def test_with_the_catalog_down_reads_and_writes_are_503_with_retry_after(module_cluster: Cluster, module_api: Api) -> None:
    module_api.set_stock(1, 5)
    orders_before = module_api.order_count()
    module_cluster.kill("catalog")
    for method, path in CATALOG_ROUTES:
        assert_error(module_api.request(method, path), 503)
    assert_error(module_api.buy(1), 503)
    assert_error(module_api.update(1, {"stock_delta": 3}), 503)
    health = _health(module_api)
    assert health["status"] == "degraded"
    assert _status_of(health, "catalog") == "down"
    assert _status_of(health, "order") == "up"
    module_cluster.restart("catalog")
    assert module_api.stock(1) == 5, "neither the failed buy nor the failed update may have taken effect"
    assert module_api.order_count() == orders_before, "a buy that failed must leave no order behind"
    assert _health(module_api)["status"] == "ok"


def test_with_the_order_tier_down_buys_and_orders_are_503_but_the_catalog_still_answers(
    module_cluster: Cluster, module_api: Api
) -> None:
    module_api.set_stock(1, 5)
    module_api.bought(1)
    module_cluster.kill("order")
    for method, path in ORDER_ROUTES:
        assert_error(module_api.request(method, path), 503)
    assert module_api.stock(1) == 4, "a buy that cannot reach the order tier must not take a copy"
    assert module_api.lookup(2)["id"] == 2
    health = _health(module_api)
    assert health["status"] == "degraded" and _status_of(health, "order") == "down"
    module_cluster.restart("order")
    assert module_api.bought(1)["item"] == 1
    assert module_api.stock(1) == 3


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_a_retry_after_the_503_succeeds_once_the_tier_is_back(module_cluster: Cluster, module_api: Api, kind: str) -> None:
    module_api.set_stock(2, 5)
    module_cluster.kill(kind)
    assert_error(module_api.buy(2, key=f"outage-{kind}"), 503)
    module_cluster.restart(kind)
    first = module_api.bought(2, key=f"outage-{kind}")
    assert module_api.bought(2, key=f"outage-{kind}")["order_id"] == first["order_id"]
    assert module_api.stock(2) == 4
