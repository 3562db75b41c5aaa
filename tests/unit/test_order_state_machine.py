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


def test_an_aborted_order_is_retried_with_a_new_attempt_and_request_id(machine: OrderStateMachine) -> None:
    order = begin(machine, key="k1")["order"]
    settle(machine, order, "aborted")
    retried = begin(machine, key="k1")["order"]
    assert retried["status"] == "pending" and retried["attempt"] == order["attempt"] + 1


def test_settling_twice_or_a_stale_attempt_changes_nothing(machine: OrderStateMachine) -> None:
    order = begin(machine, key="k1")["order"]
    settle(machine, order, "aborted")
    retried = begin(machine, key="k1")["order"]
    stale = settle(machine, order, "done")  # the first attempt's outcome arrives late
    assert stale["changed"] is False
    settle(machine, retried, "out_of_stock")
    assert settle(machine, retried, "done")["changed"] is False
    assert machine.store.get(order["order_id"]).status == "out_of_stock"  # type: ignore[union-attr]


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
