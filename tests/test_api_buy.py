"""Buying through the public API: the order it makes, the stock it takes, 409 at zero, idempotent retries."""

from __future__ import annotations

import datetime
import uuid

import pytest

from support.catalogs import REFERENCE_BOOKS
from support.http import Api, assert_error, ok_json


def _key() -> str:
    return f"test-{uuid.uuid4()}"


def _assert_is_order(order: dict, item: int) -> None:
    assert set(order) >= {"order_id", "item", "title", "cost", "time"}, order
    assert isinstance(order["order_id"], int) and order["order_id"] > 0
    assert order["item"] == item
    assert order["title"] == REFERENCE_BOOKS[item][0]
    moment = datetime.datetime.fromisoformat(order["time"])
    assert moment.utcoffset() is not None, f"order time {order['time']!r} must say its UTC offset"


def test_buy_returns_the_order_and_takes_one_copy(api: Api) -> None:
    api.set_stock(2, 10)
    price = api.lookup(2)["cost"]
    bought = api.bought(2)
    assert set(bought) >= {"order_id", "item", "title", "cost"}
    assert (bought["item"], bought["title"], bought["cost"]) == (2, REFERENCE_BOOKS[2][0], price)
    assert api.stock(2) == 9


@pytest.mark.parametrize(
    "method, path, params",
    [("POST", "/buy/4", None), ("POST", "/buy", {"item": 4}), ("GET", "/buy", {"item": 4})],
    ids=["POST /buy/{item}", "POST /buy?item=", "GET /buy?item= (the reference's client)"],
)
def test_every_form_of_buy_places_one_order(api: Api, method: str, path: str, params: dict | None) -> None:
    api.set_stock(4, 5)
    before = api.order_count()
    bought = ok_json(api.request(method, path, params=params))
    assert bought["item"] == 4
    assert api.stock(4) == 4
    assert api.order_count() == before + 1


def test_a_bought_order_can_be_fetched_by_its_id(api: Api) -> None:
    api.set_stock(5, 5)
    bought = api.bought(5)
    order = api.order(bought["order_id"])
    _assert_is_order(order, 5)
    assert {k: order[k] for k in ("order_id", "item", "title", "cost")} == {
        k: bought[k] for k in ("order_id", "item", "title", "cost")
    }


def test_orders_are_listed_in_pages_with_offset_limit_and_total(api: Api) -> None:
    api.set_stock(6, 10)
    placed = [api.bought(6)["order_id"] for _ in range(3)]
    total = api.order_count()
    assert total >= 3
    last_three = api.orders_page(offset=total - 3, limit=3)
    assert (last_three["offset"], last_three["limit"], last_three["total"]) == (total - 3, 3, total)
    assert [o["order_id"] for o in last_three["orders"]] == placed, "orders are listed oldest first"
    for order in last_three["orders"]:
        _assert_is_order(order, 6)
    one = api.orders_page(offset=total - 2, limit=1)
    assert [o["order_id"] for o in one["orders"]] == [placed[1]]
    beyond = api.orders_page(offset=total + 10, limit=5)
    assert beyond["orders"] == [] and beyond["total"] == total
    everything = api.all_orders()
    assert len(everything) == total
    assert len({o["order_id"] for o in everything}) == total


def test_orders_without_paging_parameters_start_at_the_first_order(api: Api) -> None:
    api.set_stock(6, 5)
    api.bought(6)
    page = ok_json(api.get("/orders"))
    assert page["offset"] == 0 and page["limit"] >= 1 and page["total"] >= 1
    assert 1 <= len(page["orders"]) <= page["limit"]


def test_buying_a_sold_out_book_is_409_and_places_no_order(api: Api) -> None:
    api.set_stock(7, 1)
    api.bought(7)
    before = api.order_count()
    assert_error(api.buy(7), 409)
    assert_error(api.get("/buy", params={"item": 7}), 409)
    assert api.stock(7) == 0
    assert api.order_count() == before


def test_buying_an_unknown_book_is_404_and_places_no_order(api: Api) -> None:
    before = api.order_count()
    assert_error(api.buy(424242), 404)
    assert api.order_count() == before


def test_retried_buy_with_the_same_idempotency_key_returns_the_same_order_and_takes_one_copy(api: Api) -> None:
    api.set_stock(1, 10)
    before = api.order_count()
    key = _key()
    first = api.bought(1, key)
    again = api.bought(1, key)
    also_by_query = ok_json(api.post("/buy", params={"item": 1}, headers={"Idempotency-Key": key}))
    assert again["order_id"] == first["order_id"] == also_by_query["order_id"]
    assert api.stock(1) == 9
    assert api.order_count() == before + 1


def test_retry_with_the_same_key_still_returns_the_order_after_the_book_sells_out(api: Api) -> None:
    api.set_stock(3, 1)
    key = _key()
    first = api.bought(3, key)
    assert api.stock(3) == 0
    assert api.bought(3, key)["order_id"] == first["order_id"], "a retry must not turn a success into a 409"


def test_different_idempotency_keys_make_different_orders(api: Api) -> None:
    api.set_stock(1, 10)
    a, b = api.bought(1, _key()), api.bought(1, _key())
    assert a["order_id"] != b["order_id"]
    assert api.stock(1) == 8


def test_buys_without_a_key_are_never_merged(api: Api) -> None:
    api.set_stock(1, 10)
    a, b = api.bought(1), api.bought(1)
    assert a["order_id"] != b["order_id"]
    assert api.stock(1) == 8


@pytest.mark.parametrize("key", ["", "k" * 256])
def test_an_idempotency_key_outside_1_to_255_characters_is_400_and_buys_nothing(api: Api, key: str) -> None:
    api.set_stock(2, 5)
    assert_error(api.buy(2, key), 400)
    assert api.stock(2) == 5


def test_an_idempotency_key_reused_for_another_item_is_422_and_buys_nothing(api: Api) -> None:
    """As the IETF Idempotency-Key draft says: the same key with a different request is refused."""
    api.set_stock(1, 10)
    api.set_stock(2, 10)
    key = _key()
    api.bought(1, key)
    before = api.order_count()
    assert_error(api.buy(2, key), 422)
    assert (api.stock(1), api.stock(2), api.order_count()) == (9, 10, before)


def test_an_order_keeps_the_price_paid_when_the_price_changes_later(api: Api) -> None:
    api.set_stock(4, 5)
    ok_json(api.update(4, {"cost": 11.0}))
    cheap = api.bought(4)
    ok_json(api.update(4, {"cost": 99.0}))
    dear = api.bought(4)
    assert (cheap["cost"], dear["cost"]) == (11.0, 99.0)
    assert api.order(cheap["order_id"])["cost"] == 11.0
