"""Bad input gets a JSON error with the right status, never a traceback, never a partial write."""

from __future__ import annotations

import pytest

from support.http import Api, assert_error

# Ids that are not positive integers in plain ASCII digits.
MALFORMED_IDS = ["abc", "-1", "-0", "1.5", "1e3", "0x1f", "+1", " 1", "1 ", "١", "９", "1;2", "1%00", "99999999999999999999999"]


@pytest.mark.parametrize("item", MALFORMED_IDS, ids=repr)
def test_a_malformed_item_is_400_on_lookup(api: Api, item: str) -> None:
    assert_error(api.get(f"/lookup/{item}"), 400)
    assert_error(api.get("/lookup", params={"item": item}), 400)


@pytest.mark.parametrize("item", MALFORMED_IDS, ids=repr)
def test_a_malformed_item_is_400_on_buy_and_buys_nothing(api: Api, item: str) -> None:
    before = api.order_count()
    assert_error(api.post(f"/buy/{item}"), 400)
    assert_error(api.post("/buy", params={"item": item}), 400)
    assert_error(api.get("/buy", params={"item": item}), 400)
    assert api.order_count() == before


@pytest.mark.parametrize("item", MALFORMED_IDS, ids=repr)
def test_a_malformed_item_is_400_on_admin_update_and_changes_nothing(api: Api, item: str) -> None:
    assert_error(api.post(f"/admin/books/{item}", json={"stock_delta": 1}, headers=_admin(api)), 400)


@pytest.mark.parametrize("order_id", MALFORMED_IDS, ids=repr)
def test_a_malformed_order_id_is_400(api: Api, order_id: str) -> None:
    assert_error(api.get(f"/orders/{order_id}"), 400)


@pytest.mark.parametrize("path", ["/lookup/0", "/lookup?item=0", "/orders/0"])
def test_id_zero_names_nothing(api: Api, path: str) -> None:
    resp = api.get(path)
    assert resp.status_code in (400, 404), resp.text
    assert_error(resp, resp.status_code)


@pytest.mark.parametrize(
    "method, path",
    [("GET", "/lookup"), ("GET", "/lookup?item="), ("POST", "/buy"), ("GET", "/buy"), ("GET", "/search"), ("GET", "/search?topic=")],
)
def test_a_missing_parameter_is_400(api: Api, method: str, path: str) -> None:
    before = api.order_count()
    assert_error(api.request(method, path), 400)
    assert api.order_count() == before


@pytest.mark.parametrize(
    "params",
    [{"offset": "-1"}, {"offset": "x"}, {"limit": "0"}, {"limit": "-5"}, {"limit": "1001"}, {"limit": "ten"}, {"offset": "1.5"}],
    ids=repr,
)
def test_bad_paging_parameters_are_400(api: Api, params: dict) -> None:
    assert_error(api.get("/orders", params=params), 400)


@pytest.mark.parametrize("order_id", [10**9, 2**63 - 1])
def test_an_unknown_order_is_404(api: Api, order_id: int) -> None:
    assert_error(api.get(f"/orders/{order_id}"), 404)


@pytest.mark.parametrize("path", ["/dashboard/nope", "/nope", "/lookup/1/extra", "/books/1", "/admin", "/admin/books", "/search/ds/more"])
def test_an_unknown_route_is_a_json_404(api: Api, path: str) -> None:
    assert_error(api.get(path), 404)


@pytest.mark.parametrize(
    "method, path",
    [
        ("DELETE", "/lookup/1"),
        ("POST", "/lookup/1"),
        ("PUT", "/lookup?item=1"),
        ("POST", "/search/ds"),
        ("PATCH", "/search?topic=ds"),
        ("GET", "/buy/1"),
        ("PUT", "/buy/1"),
        ("DELETE", "/buy?item=1"),
        ("POST", "/orders"),
        ("DELETE", "/orders/1"),
        ("GET", "/admin/books/1"),
        ("PUT", "/admin/books/1"),
        ("POST", "/health"),
        ("POST", "/openapi.json"),
    ],
)
def test_a_wrong_method_is_a_json_405_with_allow(api: Api, method: str, path: str) -> None:
    before = api.order_count()
    assert_error(api.request(method, path), 405)
    assert api.order_count() == before


def test_a_head_request_never_buys(api: Api) -> None:
    """GET /buy buys (the reference's client did), so HEAD /buy, which HTTP treats as a safe GET, must not."""
    api.set_stock(3, 5)
    before = api.order_count()
    resp = api.request("HEAD", "/buy", params={"item": 3})
    assert resp.status_code == 405, resp.status_code
    assert (api.stock(3), api.order_count()) == (5, before)


OVERSIZED = 64 * 1024 + 1


def test_an_admin_update_over_64_kib_is_413_and_changes_nothing(api: Api) -> None:
    book = api.lookup(3)
    body = b'{"stock_delta": 1, "cost": 7, "pad": "' + b"x" * OVERSIZED + b'"}'
    headers = {**_admin(api), "Content-Type": "application/json"}
    assert_error(api.post("/admin/books/3", data=body, headers=headers), 413)
    assert api.lookup(3) == book


def test_a_buy_with_a_body_over_64_kib_is_413_and_buys_nothing(api: Api) -> None:
    api.set_stock(3, 5)
    before = api.order_count()
    resp = api.post("/buy/3", data=b"x" * OVERSIZED, headers={"Content-Type": "application/octet-stream"})
    assert_error(resp, 413)
    assert api.stock(3) == 5
    assert api.order_count() == before


def test_an_oversized_body_is_refused_even_without_a_token(api: Api) -> None:
    resp = api.post("/admin/books/3", data=b"x" * (1024 * 1024), headers={"Content-Type": "application/json"})
    assert resp.status_code in (401, 413), resp.text
    assert_error(resp, resp.status_code)


def test_an_admin_update_of_exactly_64_kib_is_not_refused_for_its_size(api: Api) -> None:
    book = api.lookup(3)
    prefix, suffix = b'{"cost": ' + str(book["cost"]).encode(), b"}"
    body = prefix + b" " * (64 * 1024 - len(prefix) - len(suffix)) + suffix
    resp = api.post("/admin/books/3", data=body, headers={**_admin(api), "Content-Type": "application/json"})
    assert resp.status_code == 200, resp.text


def _admin(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {api.admin_token}"}
