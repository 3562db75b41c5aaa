"""The catalog state machine, specified command by command on a real SQLite file."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygmy.catalog.books import DEFAULT_BOOKS, Book
from pygmy.catalog.state_machine import CatalogStateMachine, CommandError
from pygmy.catalog.store import CatalogStore


@pytest.fixture
def machine(tmp_path: Path) -> CatalogStateMachine:
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    store.seed([*DEFAULT_BOOKS, Book(8, "Last Copy", "ds", 1, 9.0)])
    return CatalogStateMachine(store)


def stock(machine: CatalogStateMachine, item: int) -> int:
    book = machine.store.book(item)
    assert book is not None
    return book.stock


def test_decrement_takes_one_copy_and_reports_the_book(machine: CatalogStateMachine) -> None:
    result = machine.apply({"op": "decrement", "item": 1})
    assert result["ok"] is True and result["book"]["stock"] == 99
    assert stock(machine, 1) == 99


def test_decrement_fails_cleanly_at_zero_and_stock_never_goes_negative(machine: CatalogStateMachine) -> None:
    assert machine.apply({"op": "decrement", "item": 8})["ok"] is True
    result = machine.apply({"op": "decrement", "item": 8})
    assert result == {"ok": False, "error": "out_of_stock", "book": result["book"]}
    assert stock(machine, 8) == 0


def test_decrement_of_unknown_item_changes_nothing(machine: CatalogStateMachine) -> None:
    assert machine.apply({"op": "decrement", "item": 999}) == {"ok": False, "error": "not_found"}


def test_a_request_id_is_applied_at_most_once_and_a_retry_gets_the_first_result(machine: CatalogStateMachine) -> None:
    first = machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o1.0"})
    again = machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o1.0"})
    assert again == first
    assert stock(machine, 1) == 99


def test_resolve_returns_the_result_of_an_applied_request(machine: CatalogStateMachine) -> None:
    taken = machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o1.0"})
    assert machine.apply({"op": "resolve", "request_id": "c:0:o1.0"}) == taken


def test_resolve_aborts_an_unapplied_request_so_a_late_decrement_never_applies(machine: CatalogStateMachine) -> None:
    assert machine.apply({"op": "resolve", "request_id": "c:0:o2.0"}) == {"ok": False, "error": "aborted"}
    late = machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o2.0"})
    assert late == {"ok": False, "error": "aborted"}
    assert stock(machine, 1) == 100


def test_update_restocks_and_reprices(machine: CatalogStateMachine) -> None:
    result = machine.apply({"op": "update", "item": 2, "stock_delta": 5, "cost": 11.5})
    assert result["ok"] and result["book"]["stock"] == 105 and result["book"]["cost"] == 11.5


def test_update_that_would_make_stock_negative_is_refused_and_changes_nothing(machine: CatalogStateMachine) -> None:
    result = machine.apply({"op": "update", "item": 2, "stock_delta": -101, "cost": 1.0})
    assert result["ok"] is False and result["error"] == "negative_stock"
    book = machine.store.book(2)
    assert book is not None and (book.stock, book.cost) == (100, 15.0)


@pytest.mark.parametrize(
    "command",
    [
        {"op": "update", "item": 2},
        {"op": "update", "item": 2, "stock_delta": 1.5},
        {"op": "update", "item": 2, "stock_delta": True},
        {"op": "update", "item": 2, "cost": -1},
        {"op": "update", "item": 2, "cost": "free"},
        {"op": "update", "item": 2, "cost": float("nan")},
        {"op": "update", "item": 2, "cost": None},
        {"op": "update", "item": 0, "stock_delta": 1},
        {"op": "decrement", "item": "1"},
        {"op": "explode"},
        {"op": "decrement", "item": 1, "request_id": 7},
    ],
)
def test_malformed_commands_raise_and_change_nothing(machine: CatalogStateMachine, command: dict) -> None:
    before = list(machine.store.all_books())
    with pytest.raises(CommandError):
        machine.apply(command)
    assert list(machine.store.all_books()) == before


def test_state_survives_reopening_the_file(tmp_path: Path) -> None:
    store = CatalogStore(tmp_path / "c.sqlite3")
    store.seed(DEFAULT_BOOKS)
    CatalogStateMachine(store).apply({"op": "decrement", "item": 3, "request_id": "c:0:o9.0"})
    store.close()
    reopened = CatalogStateMachine(CatalogStore(tmp_path / "c.sqlite3"))
    assert stock(reopened, 3) == 99
    assert reopened.apply({"op": "decrement", "item": 3, "request_id": "c:0:o9.0"})["book"]["stock"] == 99


def test_a_buy_or_update_before_the_initial_catalog_is_in_fails_as_loading_not_as_unknown_book(tmp_path: Path) -> None:
    """At a fresh cluster's first start the books come through the log in seed chunks; a decrement ordered
    before them must not answer "no such book" (the frontend would tell the buyer 404)."""
    machine = CatalogStateMachine(CatalogStore(tmp_path / "fresh.sqlite3"))
    assert machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o1.0"}) == {"ok": False, "error": "loading"}
    assert machine.apply({"op": "update", "item": 1, "stock_delta": 5}) == {"ok": False, "error": "loading"}
    books = [b.to_json() for b in DEFAULT_BOOKS]
    assert machine.apply({"op": "seed", "chunk": 0, "books": books, "last": True})["ok"] is True
    assert machine.apply({"op": "decrement", "item": 1, "request_id": "c:0:o2.0"})["ok"] is True
    assert stock(machine, 1) == 99
