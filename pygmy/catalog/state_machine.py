"""The catalog as a state machine: every write is a command, applied deterministically and durably.

`apply(command) -> result` touches nothing but the catalog's own SQLite file, so the same sequence of
commands gives the same books on every replica; consensus slots in underneath without changing it.

Commands (JSON objects):
- `{"op": "decrement", "item": 1, "request_id": "o17.0"}`: take one copy for a buy; fails cleanly at 0.
- `{"op": "update", "item": 1, "stock_delta": 5, "cost": 12.5}`: admin restock/reprice; stock never negative.
- `{"op": "resolve", "request_id": "o17.0"}`: the order tier settling a buy it lost track of: the
  decrement's result if it was applied, otherwise the request is marked aborted so it never applies later.
A command with a `request_id` is applied at most once; a retry returns the first result.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pygmy.catalog.store import CatalogStore
from pygmy.common.metrics import COMMANDS

Result = dict[str, Any]


class CommandError(ValueError):
    """A command that is malformed; nothing was changed."""


class CatalogStateMachine:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store

    def apply(self, command: dict[str, Any]) -> Result:
        op = command.get("op")
        handler = _HANDLERS.get(op)  # type: ignore[arg-type]
        if handler is None:
            raise CommandError(f"unknown catalog command {op!r}")
        request_id = command.get("request_id")
        if request_id is not None and not isinstance(request_id, str):
            raise CommandError("request_id must be a string")
        with self.store.transaction():
            if request_id is not None:
                previous = self.store.request_result(request_id)
                if previous is not None:
                    return previous
            result = handler(self.store, command)
            if request_id is not None:
                self.store.record_request(request_id, result)
        COMMANDS.labels("catalog", op, "ok" if result.get("ok") else result.get("error", "failed")).inc()
        return result


def _decrement(store: CatalogStore, command: dict[str, Any]) -> Result:
    book = store.book(_item(command))
    if book is None:
        return {"ok": False, "error": "not_found"}
    if book.stock <= 0:
        return {"ok": False, "error": "out_of_stock", "book": book.to_json()}
    book = dataclasses.replace(book, stock=book.stock - 1)
    store.set_book(book)
    return {"ok": True, "book": book.to_json()}


def _update(store: CatalogStore, command: dict[str, Any]) -> Result:
    validate_update(command)
    book = store.book(_item(command))
    if book is None:
        return {"ok": False, "error": "not_found"}
    delta = command.get("stock_delta", 0)
    cost = command.get("cost")
    cost = book.cost if cost is None else cost
    if book.stock + delta < 0:
        return {"ok": False, "error": "negative_stock", "book": book.to_json()}
    book = dataclasses.replace(book, stock=book.stock + delta, cost=float(cost))
    store.set_book(book)
    return {"ok": True, "book": book.to_json()}


def _resolve(store: CatalogStore, command: dict[str, Any]) -> Result:
    # Reached only when the request id was never applied (apply() answers known ids itself).
    if not command.get("request_id"):
        raise CommandError("resolve needs a request_id")
    return {"ok": False, "error": "aborted"}


def _item(command: dict[str, Any]) -> int:
    item = command.get("item")
    if not isinstance(item, int) or isinstance(item, bool) or item <= 0:
        raise CommandError("item must be a positive integer")
    return item


def validate_update(command: dict[str, Any]) -> None:
    """Check an update's fields before it is proposed, so a bad one is refused and changes nothing."""
    delta = command.get("stock_delta", 0)
    cost = command.get("cost")
    if "stock_delta" not in command and "cost" not in command:
        raise CommandError("give stock_delta, cost, or both")
    if not isinstance(delta, int) or isinstance(delta, bool):
        raise CommandError("stock_delta must be an integer")
    if abs(delta) > 1_000_000_000:
        raise CommandError("stock_delta is out of range")
    if "cost" in command and (
        isinstance(cost, bool) or not isinstance(cost, (int, float)) or not math.isfinite(cost) or cost < 0
    ):
        raise CommandError("cost must be a non-negative number")
    if cost is not None and cost > 1e12:
        raise CommandError("cost is out of range")


_HANDLERS = {"decrement": _decrement, "update": _update, "resolve": _resolve}
