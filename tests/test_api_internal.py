"""Tier-to-tier endpoints are closed to anyone without the cluster secret, and the frontend never exposes them."""

from __future__ import annotations

import pytest
import requests

from support.cluster import Cluster
from support.http import Api, assert_error

CATALOG_INTERNAL = [
    ("GET", "/internal/books/1", None),
    ("GET", "/internal/search?topic=ds", None),
    ("GET", "/internal/health", None),
    ("POST", "/internal/apply", {"op": "update", "item": 1, "stock_delta": -1}),
]
ORDER_INTERNAL = [
    ("GET", "/internal/orders/1", None),
    ("GET", "/internal/orders?offset=0&limit=10", None),
    ("GET", "/internal/health", None),
    ("POST", "/internal/buy", {"item": 1, "idempotency_key": None}),
]
NO_SECRET: list[dict[str, str]] = [{}, {"X-Pygmy-Secret": "guess"}, {"X-Pygmy-Secret": ""}]


def _call(base: str, method: str, path: str, body: dict | None, headers: dict) -> requests.Response:
    return requests.request(method, base + path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize("headers", NO_SECRET, ids=["no secret", "wrong secret", "empty secret"])
@pytest.mark.parametrize("method, path, body", CATALOG_INTERNAL)
def test_catalog_internal_endpoints_refuse_callers_without_the_cluster_secret(
    cluster: Cluster, api: Api, method: str, path: str, body: dict | None, headers: dict
) -> None:
    stock = api.stock(1)
    assert_error(_call(cluster.catalog_url, method, path, body, headers), 403)
    assert api.stock(1) == stock


@pytest.mark.parametrize("headers", NO_SECRET, ids=["no secret", "wrong secret", "empty secret"])
@pytest.mark.parametrize("method, path, body", ORDER_INTERNAL)
def test_order_internal_endpoints_refuse_callers_without_the_cluster_secret(
    cluster: Cluster, api: Api, method: str, path: str, body: dict | None, headers: dict
) -> None:
    stock, orders = api.stock(1), api.order_count()
    assert_error(_call(cluster.order_url, method, path, body, headers), 403)
    assert (api.stock(1), api.order_count()) == (stock, orders)


def test_the_cluster_secret_from_the_config_opens_the_internal_endpoints(cluster: Cluster) -> None:
    for base, path in [(cluster.catalog_url, "/internal/books/1"), (cluster.order_url, "/internal/health")]:
        resp = requests.get(base + path, headers=cluster.secret_headers(), timeout=10)
        assert resp.status_code == 200, resp.text


@pytest.mark.parametrize("method, path, body", CATALOG_INTERNAL + ORDER_INTERNAL)
def test_the_frontend_does_not_expose_internal_endpoints_even_with_the_secret(
    cluster: Cluster, api: Api, method: str, path: str, body: dict | None
) -> None:
    stock, orders = api.stock(1), api.order_count()
    resp = _call(cluster.frontend_url, method, path, body, cluster.secret_headers())
    assert resp.status_code in (403, 404), resp.text
    assert_error(resp, resp.status_code)
    assert (api.stock(1), api.order_count()) == (stock, orders)
