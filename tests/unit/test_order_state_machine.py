"""The order log state machine: begin, settle, idempotency keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygmy.order.state_machine import CommandError, OrderStateMachine
from pygmy.order.store import OrderStore

T = "2026-01-01T00:00:00.000+00:00"


@pytest.fixture
def machine(tmp_path: Path) -> OrderStateMachine:
    return OrderStateMachine(OrderStore(tmp_path / "orders.sqlite3"))


def begin(machine: OrderStateMachine, item: int = 1, key: str | None = None) -> dict:
    return machine.apply({"op": "begin", "item": item, "time": T, "idempotency_key": key})


def settle(machine: OrderStateMachine, order: dict, status: str) -> dict:
    return machine.apply({
        "op": "settle", "order_id": order["order_id"], "attempt": order["attempt"],
        "status": status, "title": "A Book", "cost": 10.0,
    })


def test_begin_opens_a_pending_order_with_increasing_ids(machine: OrderStateMachine) -> None:
    first, second = begin(machine)["order"], begin(machine)["order"]
    assert first["status"] == second["status"] == "pending"
    assert second["order_id"] == first["order_id"] + 1


def test_settled_orders_are_listed_and_pending_ones_are_not(machine: OrderStateMachine) -> None:
    done = begin(machine)["order"]
    begin(machine)
    settle(machine, done, "done")
    orders, total = machine.store.done(0, 10)
    assert total == 1 and orders[0].order_id == done["order_id"] and orders[0].title == "A Book"


def test_begin_with_a_known_key_returns_the_same_order(machine: OrderStateMachine) -> None:
    first = begin(machine, key="k1")
    again = begin(machine, key="k1")
    assert again["created"] is False and again["order"]["order_id"] == first["order"]["order_id"]


def test_a_key_reused_for_another_item_is_refused(machine: OrderStateMachine) -> None:
    begin(machine, item=1, key="k1")
    assert begin(machine, item=2, key="k1")["error"] == "key_reused"


def test_a_retry_of_an_aborted_order_opens_a_new_order_that_takes_the_key(machine: OrderStateMachine) -> None:
    order = begin(machine, key="k1")["order"]
    settle(machine, order, "aborted")
    retried = begin(machine, key="k1")["order"]
    # A new id (and so a new catalog request id): an order id is pending once only, so the watermark holds.
    assert retried["status"] == "pending" and retried["order_id"] > order["order_id"]
    assert machine.store.by_key("k1").order_id == retried["order_id"]  # type: ignore[union-attr]
    assert machine.store.get(order["order_id"]).status == "aborted"  # type: ignore[union-attr]


def test_the_watermark_is_the_lowest_pending_order_and_old_keys_are_forgotten(machine: OrderStateMachine) -> None:
    first, second = begin(machine, key="old")["order"], begin(machine, key="new")["order"]
    settle(machine, first, "done")
    assert machine.apply({"op": "watermark", "time": T})["below"] == second["order_id"]
    settle(machine, second, "done")
    later = "2026-01-02T00:00:01.000+00:00"  # a day and a second after both
    result = machine.apply({"op": "watermark", "time": later, "keep_keys": 86400})
    assert result == {"below": second["order_id"] + 1, "keys_forgotten": 2}
    assert begin(machine, key="old")["created"] is True  # after the retention, a key is a new buy


def test_settling_twice_or_a_stale_attempt_changes_nothing(machine: OrderStateMachine) -> None:
    order = begin(machine, key="k1")["order"]
    settle(machine, order, "aborted")
    retried = begin(machine, key="k1")["order"]
    stale = settle(machine, order, "done")  # the first order's outcome arrives late
    assert stale["changed"] is False
    settle(machine, retried, "out_of_stock")
    assert settle(machine, retried, "done")["changed"] is False
    assert machine.store.get(order["order_id"]).status == "aborted"  # type: ignore[union-attr]
    assert machine.store.get(retried["order_id"]).status == "out_of_stock"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "command",
    [
        {"op": "begin", "item": 0, "time": T},
        {"op": "begin", "item": 1},
        {"op": "settle", "order_id": 99, "attempt": 0, "status": "done"},
        {"op": "refund"},
    ],
)
def test_malformed_commands_raise(machine: OrderStateMachine, command: dict) -> None:
    with pytest.raises(CommandError):
        machine.apply(command)
