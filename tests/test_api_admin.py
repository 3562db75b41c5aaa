"""The admin update (the reference's update_stock): bearer token required, all of it applied or none of it."""

from __future__ import annotations

from typing import Any

import pytest

from support.http import Api, assert_error, ok_json

ITEM = 5


@pytest.fixture
def book(api: Api) -> dict[str, Any]:
    """Item 5 with a known stock and price, as it is before the test's update."""
    ok_json(api.update(ITEM, {"stock_delta": 20 - api.stock(ITEM), "cost": 18.5}))
    return api.lookup(ITEM)


def test_update_adds_stock_and_sets_the_price_and_returns_the_book(api: Api, book: dict) -> None:
    updated = ok_json(api.update(ITEM, {"stock_delta": 7, "cost": 21.75}))
    assert updated == {**book, "stock": 27, "cost": 21.75}
    assert api.lookup(ITEM) == updated


def test_update_with_only_a_stock_delta_keeps_the_price(api: Api, book: dict) -> None:
    ok_json(api.update(ITEM, {"stock_delta": -5}))
    assert api.lookup(ITEM) == {**book, "stock": 15}


def test_update_with_only_a_cost_keeps_the_stock(api: Api, book: dict) -> None:
    ok_json(api.update(ITEM, {"cost": 3}))
    assert api.lookup(ITEM) == {**book, "cost": 3}


def test_stock_can_be_taken_down_to_exactly_zero(api: Api, book: dict) -> None:
    assert ok_json(api.update(ITEM, {"stock_delta": -20}))["stock"] == 0


def test_update_that_would_take_stock_below_zero_is_409_and_changes_nothing(api: Api, book: dict) -> None:
    assert_error(api.update(ITEM, {"stock_delta": -21}), 409)
    assert_error(api.update(ITEM, {"stock_delta": -21, "cost": 1.0}), 409)
    assert api.lookup(ITEM) == book, "the price must not change when the stock part is refused"


def test_update_without_a_token_is_401_and_changes_nothing(api: Api, book: dict) -> None:
    assert_error(api.update(ITEM, {"stock_delta": 1}, token=None), 401)
    assert api.lookup(ITEM) == book


@pytest.mark.parametrize("authorization", ["Basic YWRtaW46YWRtaW4=", "Bearer", "Bearer ", "token"])
def test_update_without_a_bearer_token_is_401(api: Api, book: dict, authorization: str) -> None:
    resp = api.post(f"/admin/books/{ITEM}", json={"stock_delta": 1}, headers={"Authorization": authorization})
    assert_error(resp, 401)
    assert api.lookup(ITEM) == book


@pytest.mark.parametrize("token", ["wrong", "pygmy-admin"])  # the built-in default must not open a configured cluster
def test_update_with_a_wrong_token_is_403_and_changes_nothing(api: Api, book: dict, token: str) -> None:
    assert_error(api.update(ITEM, {"stock_delta": 1, "cost": 99}, token=token), 403)
    assert api.lookup(ITEM) == book


def test_update_of_an_unknown_book_is_404(api: Api) -> None:
    assert_error(api.update(424242, {"stock_delta": 1}), 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"stock_delta": "3"},
        {"stock_delta": 1.5},
        {"stock_delta": True},
        {"stock_delta": None},
        {"cost": "cheap"},
        {"cost": -1},
        {"cost": None},
        {"cost": [3]},
        {"stock_delta": 1, "cost": "x"},  # a good part and a bad part: nothing is applied
        {"stock_delta": "x", "cost": 5},
        {"stock_delta": 1, "price": 5},  # an unknown field is a mistake, not something to ignore
        [{"stock_delta": 1}],
        "stock_delta=1",
        17,
    ],
    ids=repr,
)
def test_update_with_a_bad_body_is_400_and_changes_nothing(api: Api, book: dict, body: Any) -> None:
    assert_error(api.update(ITEM, body), 400)
    assert api.lookup(ITEM) == book


@pytest.mark.parametrize("raw", [b"", b"{", b"not json", b'{"stock_delta": 1,}', b"\xff\xfe"], ids=repr)
def test_update_with_a_body_that_is_not_json_is_400_and_changes_nothing(api: Api, book: dict, raw: bytes) -> None:
    headers = {"Authorization": f"Bearer {api.admin_token}", "Content-Type": "application/json"}
    assert_error(api.post(f"/admin/books/{ITEM}", data=raw, headers=headers), 400)
    assert api.lookup(ITEM) == book
