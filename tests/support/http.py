"""Talking to a live frontend the way a client would, and the checks every response must pass."""

from __future__ import annotations

import re
from typing import Any

import requests

ERROR_STATUSES = (400, 401, 403, 404, 405, 409, 413, 503)
_TRACEBACK_SIGNS = ("Traceback (most recent call last)", 'File "/', "aiohttp.web_exceptions", "sqlite3.")
_TIMING_ENTRY = re.compile(r"^\s*([A-Za-z0-9_-]+)\s*;\s*dur=([0-9]+(?:\.[0-9]+)?)\s*$")


class Api:
    """The public API of one frontend, over one keep-alive session."""

    def __init__(self, base_url: str, admin_token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.admin_token = admin_token
        self.session = requests.Session()

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", 15)
        return self.session.request(method, self.base_url + path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> requests.Response:
        return self.request("POST", path, **kwargs)

    # -- the operations, asserting success ---------------------------------------------------------

    def lookup(self, item: int) -> dict[str, Any]:
        return ok_json(self.get(f"/lookup/{item}"))

    def stock(self, item: int) -> int:
        return int(self.lookup(item)["stock"])

    def search(self, topic: str) -> dict[str, Any]:
        return ok_json(self.get(f"/search/{topic}"))

    def buy(self, item: int, key: str | None = None) -> requests.Response:
        headers = {"Idempotency-Key": key} if key is not None else {}
        return self.post(f"/buy/{item}", headers=headers)

    def bought(self, item: int, key: str | None = None) -> dict[str, Any]:
        return ok_json(self.buy(item, key))

    def order(self, order_id: int) -> dict[str, Any]:
        return ok_json(self.get(f"/orders/{order_id}"))

    def orders_page(self, offset: int = 0, limit: int = 100) -> dict[str, Any]:
        return ok_json(self.get("/orders", params={"offset": offset, "limit": limit}))

    def order_count(self) -> int:
        return int(self.orders_page(0, 1)["total"])

    def all_orders(self) -> list[dict[str, Any]]:
        orders: list[dict[str, Any]] = []
        while True:
            page = self.orders_page(len(orders), 1000)
            orders += page["orders"]
            if not page["orders"] or len(orders) >= page["total"]:
                return orders

    def update(self, item: int, body: Any, token: str | None = "config") -> requests.Response:
        """POST /admin/books/{item}; token "config" means the cluster's admin token, None means no header."""
        token = self.admin_token if token == "config" else token
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return self.post(f"/admin/books/{item}", json=body, headers=headers)

    def set_stock(self, item: int, stock: int) -> dict[str, Any]:
        """Make the stock exactly `stock` with one admin update."""
        delta = stock - self.stock(item)
        book = ok_json(self.update(item, {"stock_delta": delta}))
        assert book["stock"] == stock, book
        return book


def ok_json(resp: requests.Response) -> Any:
    assert resp.status_code == 200, f"{resp.request.method} {resp.url} -> {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), resp.headers
    return resp.json()


def assert_error(resp: requests.Response, status: int, code: str | None = None) -> dict[str, str]:
    """The one error shape: the right status, JSON `{"error": {"code", "message"}}`, no traceback."""
    where = f"{resp.request.method} {resp.url}"
    assert resp.status_code == status, f"{where}: expected {status}, got {resp.status_code}: {resp.text[:500]}"
    assert resp.headers.get("Content-Type", "").startswith("application/json"), f"{where}: {resp.headers}"
    for sign in _TRACEBACK_SIGNS:
        assert sign not in resp.text, f"{where} leaks internals: {resp.text[:500]}"
    body = resp.json()
    assert isinstance(body, dict) and set(body) == {"error"}, f"{where}: {body}"
    error = body["error"]
    assert isinstance(error, dict), f"{where}: {body}"
    assert isinstance(error.get("code"), str) and error["code"], f"{where}: {body}"
    assert isinstance(error.get("message"), str) and error["message"], f"{where}: {body}"
    if code is not None:
        assert error["code"] == code, f"{where}: {body}"
    assert "Server-Timing" in resp.headers, f"{where}: an error reply needs Server-Timing too"
    if status == 503:
        retry_after = resp.headers.get("Retry-After", "")
        assert retry_after.isdigit(), f"{where}: 503 needs Retry-After in seconds, got {retry_after!r}"
    if status == 405:
        assert resp.headers.get("Allow"), f"{where}: 405 needs Allow"
    return error


def server_timing(resp: requests.Response) -> dict[str, list[float]]:
    """Server-Timing as {tier: [durations in ms]}; asserts the header is present and well formed."""
    header = resp.headers.get("Server-Timing")
    assert header, f"{resp.request.method} {resp.url}: no Server-Timing header"
    timings: dict[str, list[float]] = {}
    for entry in header.split(","):
        match = _TIMING_ENTRY.match(entry)
        assert match, f"malformed Server-Timing entry {entry!r} in {header!r}"
        timings.setdefault(match.group(1), []).append(float(match.group(2)))
    return timings
