"""Replicas die (kill -9): with a majority of each group up the store answers as if nothing happened; with a
group's majority gone the frontend answers 503 with Retry-After, changes nothing, and recovers when it is back."""

from __future__ import annotations

import time
from typing import Callable

import pytest

from pygmy.config import CacheSettings
from support.cluster import Cluster
from support.http import Api, assert_error

CATALOG_ROUTES = [
    ("GET", "/lookup/1"),
    ("GET", "/lookup?item=1"),
    ("GET", "/search/ds"),
    ("GET", "/search?topic=gs"),
]
ORDER_ROUTES = [("GET", "/orders"), ("GET", "/orders/1"), ("POST", "/buy/1"), ("POST", "/buy?item=1"), ("GET", "/buy?item=1")]


def _health(api: Api, until: Callable[[dict], bool] = lambda _: True, timeout: float = 5.0) -> dict:
    """The frontend's status document once `until` holds of it: /health tells what the last heartbeat (at
    most an interval ago) or the last refused request saw, so a node killed a moment ago may still be up."""
    deadline = time.monotonic() + timeout
    while True:
        resp = api.get("/health")
        assert resp.status_code in (200, 503), resp.text
        if until(resp.json()) or time.monotonic() > deadline:
            return resp.json()
        time.sleep(0.05)


def _status_of(health: dict, kind: str, node_id: int = 0) -> str:
    return next(n["status"] for n in health["nodes"] if n["kind"] == kind and n["id"] == node_id)


def _kill_group(cluster: Cluster, kind: str) -> None:
    for i in range(cluster.replicas):
        cluster.kill(kind, i)


def _restart_group(cluster: Cluster, kind: str) -> None:
    for i in range(cluster.replicas):
        cluster.start_node(kind, i, wait=False)
    cluster.wait_ready([cluster.node(kind, i) for i in range(cluster.replicas)])


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_with_any_one_replica_of_a_group_down_every_route_still_answers(
    module_cluster: Cluster, module_api: Api, kind: str
) -> None:
    module_api.set_stock(1, 50)
    for victim in range(module_cluster.replicas):
        module_cluster.kill(kind, victim)
        order = module_api.bought(1)
        assert module_api.get(f"/orders/{order['order_id']}").status_code == 200
        assert module_api.lookup(1)["id"] == 1 and module_api.search("ds")["total"] >= 1
        health = _health(module_api, lambda h: _status_of(h, kind, victim) == "down" and h["groups"][kind]["leader"])
        assert health["status"] == "degraded" and _status_of(health, kind, victim) == "down"
        assert health["groups"][kind]["leader"] is not None
        module_cluster.restart(kind, victim)
    assert module_api.stock(1) == 50 - module_cluster.replicas


def test_with_the_catalog_group_down_reads_and_writes_are_503_with_retry_after(module_cluster: Cluster, module_api: Api) -> None:
    module_api.set_stock(1, 5)
    orders_before = module_api.order_count()
    _kill_group(module_cluster, "catalog")
    # The frontend answers lookups it has cached until its catalog lease runs out (no write can happen
    # without the catalog, so those answers are not stale); after that it reads through and gets nothing.
    time.sleep(CacheSettings().lease_ms / 1000 + 0.1)
    for method, path in CATALOG_ROUTES:
        assert_error(module_api.request(method, path), 503)
    assert_error(module_api.buy(1), 503)
    assert_error(module_api.update(1, {"stock_delta": 3}), 503)
    health = _health(module_api, lambda h: _status_of(h, "catalog") == "down")
    assert health["status"] == "unavailable" and health["groups"]["catalog"]["leader"] is None
    assert _status_of(health, "catalog") == "down"
    assert _status_of(health, "order") == "up"
    _restart_group(module_cluster, "catalog")
    assert module_api.stock(1) == 5, "neither the failed buy nor the failed update may have taken effect"
    assert module_api.order_count() == orders_before, "a buy that failed must leave no order behind"


def test_with_the_order_group_down_buys_and_orders_are_503_but_the_catalog_still_answers(
    module_cluster: Cluster, module_api: Api
) -> None:
    module_api.set_stock(1, 5)
    module_api.bought(1)
    _kill_group(module_cluster, "order")
    for method, path in ORDER_ROUTES:
        assert_error(module_api.request(method, path), 503)
    assert module_api.stock(1) == 4, "a buy that cannot reach the order group must not take a copy"
    assert module_api.lookup(2)["id"] == 2
    health = _health(module_api, lambda h: _status_of(h, "order") == "down")
    assert health["status"] == "unavailable" and _status_of(health, "order") == "down"
    _restart_group(module_cluster, "order")
    assert module_api.bought(1)["item"] == 1
    assert module_api.stock(1) == 3


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_a_retry_after_the_503_succeeds_once_the_group_is_back(module_cluster: Cluster, module_api: Api, kind: str) -> None:
    module_api.set_stock(2, 5)
    _kill_group(module_cluster, kind)
    assert_error(module_api.buy(2, key=f"outage-{kind}"), 503)
    _restart_group(module_cluster, kind)
    first = module_api.bought(2, key=f"outage-{kind}")
    assert module_api.bought(2, key=f"outage-{kind}")["order_id"] == first["order_id"]
    assert module_api.stock(2) == 4


@pytest.mark.parametrize("kind", ["catalog", "order"])
def test_with_a_groups_majority_down_a_buy_is_definitely_not_carried_out(
    module_cluster: Cluster, module_api: Api, kind: str
) -> None:
    """The survivor answers, but only to say it has no leader: that is "not carried out" (503 `unavailable`),
    not "outcome unknown", and nothing changes. But a retry under a client's key whose earlier buy went
    through is never told "not carried out"."""
    module_api.set_stock(3, 5)
    earlier = module_api.bought(3, key=f"majority-{kind}")  # a buy whose answer, say, the client lost
    orders_before = module_api.order_count()
    leader, _ = module_cluster.leader(kind)
    victims = [leader, (leader + 1) % module_cluster.replicas]
    for victim in victims:
        module_cluster.kill(kind, victim)
    assert_error(module_api.buy(3), 503, "unavailable")
    retry = module_api.buy(3, key=f"majority-{kind}")
    if kind == "order":
        assert_error(retry, 503, "outcome_unknown")  # the order group cannot be asked what the key bought
    else:
        assert retry.status_code == 200 and retry.json()["order_id"] == earlier["order_id"], retry.text
    for victim in victims:
        module_cluster.start_node(kind, victim, wait=False)
    module_cluster.wait_ready([module_cluster.node(kind, v) for v in victims])
    module_cluster.leader(kind)
    assert module_api.stock(3) == 4, "a buy answered 'not carried out' took a copy"
    assert module_api.order_count() == orders_before, "a buy answered 'not carried out' left an order"
    assert module_api.bought(3, key=f"majority-{kind}")["order_id"] == earlier["order_id"]
