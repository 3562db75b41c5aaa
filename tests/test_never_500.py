"""Hostile input is a clean 4xx with a JSON error, never a 500, and a refused request changes nothing.

Each case here answered 500 (with a traceback in the log) or did the wrong thing before it was fixed
(issue 9): bytes that are not UTF-8 in headers, ids past Python's int-string limit or SQLite's int64,
bodies that lie about their encoding or repeat keys, a chunked body over the size limit, and commands
that would have reached the Raft log and failed on every replica for ever (a poison entry).
"""

from __future__ import annotations

import socket
import sqlite3
import time
from typing import Any

import pytest
import requests

from support.cluster import Cluster
from support.http import Api, assert_error


def raw_request(port: int, head: bytes, body: bytes = b"") -> tuple[int, bytes]:
    """Send bytes exactly as given (requests would refuse or re-encode them); the status and body."""
    with socket.create_connection(("127.0.0.1", port), timeout=15) as s:
        s.sendall(head + b"\r\n\r\n" + body)
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    status_line, _, rest = data.partition(b"\r\n")
    return int(status_line.split()[1]), rest.partition(b"\r\n\r\n")[2]


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_an_authorization_header_that_is_not_utf8_is_refused(cluster: Cluster) -> None:
    head = (b"POST /admin/books/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Authorization: Bearer \xff\xfe\xfa\r\nContent-Length: 18")
    status, body = raw_request(_port(cluster.frontend_url), head, b'{"stock_delta": 1}')
    assert status == 403, body
    assert b'"forbidden"' in body


def test_a_cluster_secret_that_is_not_utf8_is_refused(cluster: Cluster) -> None:
    head = b"GET /internal/books/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pygmy-Secret: \xc3\x28\xff"
    status, body = raw_request(_port(cluster.catalog_url), head)
    assert status == 403, body


def test_an_idempotency_key_that_is_not_utf8_is_400_and_buys_nothing(cluster: Cluster, api: Api) -> None:
    before = api.order_count()
    head = b"POST /buy/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 0\r\nIdempotency-Key: k\xff\xfe"
    status, body = raw_request(_port(cluster.frontend_url), head)
    assert status == 400, body
    assert b"bad_idempotency_key" in body
    assert api.order_count() == before


@pytest.mark.parametrize("path", ["/lookup/" + "7" * 4400, "/lookup?item=" + "7" * 4400, "/orders/" + "1" * 4400,
                                  "/orders?offset=" + "1" * 4400])
def test_an_id_of_4400_digits_is_400(api: Api, path: str) -> None:
    assert_error(api.get(path), 400)


def test_a_body_that_says_gzip_but_is_not_is_400(api: Api) -> None:
    resp = api.post("/admin/books/1", data=b"this is not gzip", headers={
        **_admin(api), "Content-Encoding": "gzip", "Content-Type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert_error(resp, 400)


def test_duplicate_keys_in_a_json_body_are_refused(api: Api) -> None:
    before = api.lookup(1)
    resp = api.post("/admin/books/1", data=b'{"stock_delta": 1, "stock_delta": 0}',
                    headers={**_admin(api), "Content-Type": "application/json"})
    assert_error(resp, 400, "bad_body")
    assert api.lookup(1)["stock"] == before["stock"]


def test_a_chunked_body_over_the_limit_is_413_and_buys_nothing(api: Api) -> None:
    before = api.order_count()

    def chunks() -> Any:
        for _ in range(32):
            yield b"x" * 65536  # 2 MiB in all, with no Content-Length

    resp = requests.post(f"{api.base_url}/buy/1", data=chunks(), timeout=30)
    assert_error(resp, 413)
    assert api.order_count() == before


@pytest.mark.parametrize("command", [
    {"op": "decrement", "item": 2**63, "request_id": "poison-1"},
    {"op": "decrement", "item": 2**64 - 1, "request_id": "poison-2"},
    {"op": "update", "item": 2**63, "stock_delta": 1},
    {"op": "forget", "below": 2**64 - 1},
    {"op": ["decrement"], "item": 1, "request_id": "poison-3"},
    {"op": {"x": 1}, "item": 1},
], ids=repr)
def test_an_out_of_range_or_malformed_catalog_command_is_refused_before_it_reaches_the_log(
    cluster: Cluster, api: Api, command: dict[str, Any]
) -> None:
    resp = requests.post(f"{cluster.catalog_url}/internal/apply", json=command, headers=cluster.secret_headers(), timeout=15)
    assert_error(resp, 400)
    # The group still applies writes: a poison entry would have stopped it on every replica.
    assert api.set_stock(3, api.stock(3))["id"] == 3


@pytest.mark.parametrize("item", [2**63, 2**64 - 1])
def test_an_out_of_range_internal_buy_is_refused_before_it_reaches_the_log(cluster: Cluster, api: Api, item: int) -> None:
    resp = requests.post(f"{cluster.order_url}/internal/buy", json={"item": item, "idempotency_key": f"big-{item}"},
                         headers=cluster.secret_headers(), timeout=15)
    assert_error(resp, 400, "bad_item")
    assert api.bought(1)["item"] == 1  # the order group still works


def test_a_buy_of_an_unknown_item_writes_no_order_and_no_catalog_request(cluster: Cluster, api: Api) -> None:
    orders, requests_ = _rows(cluster, "order", "orders"), _rows(cluster, "catalog", "requests")
    for _ in range(5):
        assert_error(api.buy(999_999_999), 404, "unknown_item")
    api.bought(1)  # a real buy since, so every replica has applied what the refused ones would have written
    assert _rows(cluster, "order", "orders") == orders + 1
    assert _rows(cluster, "catalog", "requests") <= requests_ + 1


def _rows(cluster: Cluster, kind: str, table: str) -> int:
    """Rows in a replica's real SQLite file, read beside the running node (WAL mode allows it)."""
    name = {"order": "orders.sqlite3", "catalog": "catalog.sqlite3"}[kind]
    db = sqlite3.connect(f"file:{cluster.node_data_dir(kind, 0) / name}?mode=ro", uri=True, timeout=10)
    try:
        return int(db.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0])
    finally:
        db.close()


def _admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin_token}"}


def test_malformed_requests_leave_one_line_each_in_the_log_and_no_traceback(cluster: Cluster, api: Api) -> None:
    log_before = len(cluster.log("frontend-0"))
    port = _port(cluster.frontend_url)
    for _ in range(3):
        api.post("/admin/books/1", data=b"not gzip", headers={**_admin(api), "Content-Encoding": "gzip"})
        raw_request(port, b"GET /lookup/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nBad Header: \x00")
        raw_request(port, b"POST /buy/1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nTransfer-Encoding: chunked",
                    b"zz\r\nbroken\r\n")
        with socket.create_connection(("127.0.0.1", port), timeout=15) as s:  # hangs up mid-body
            s.sendall(b"POST /admin/books/1 HTTP/1.1\r\nHost: x\r\nContent-Length: 50\r\nAuthorization: Bearer "
                      + api.admin_token.encode() + b"\r\n\r\n{\"sto")
    api.lookup(1)
    time.sleep(0.5)
    written = cluster.log("frontend-0")[log_before:]
    assert "Traceback" not in written, written[-3000:]
    assert len(written.splitlines()) <= 3 * 4 + 2, written
