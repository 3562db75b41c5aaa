"""The catalog as a state machine: every write is a command, applied deterministically.

`execute(command) -> result` touches nothing but the catalog's own tables, inside the caller's transaction
(the replicated machine's, one per log entry), so the same sequence of commands gives the same books on
every replica.

Commands (JSON objects):
- `{"op": "seed", "chunk": 0, "books": [...], "last": false}`: the initial catalog, through the log in
  chunks at the cluster's first start; a chunk is applied only in its turn and never after the last.
- `{"op": "decrement", "item": 1, "request_id": "4f3a9c1e:0:o17.0"}`: take one copy for a buy; fails cleanly at 0.
  A decrement or update before the initial catalog is in (at the cluster's first start) fails as
  `loading`, never as `not_found`: the book may well be in a seed chunk that is not applied yet.
- `{"op": "update", "item": 1, "stock_delta": 5, "cost": 12.5}`: admin restock/reprice; stock never negative.
- `{"op": "resolve", "request_id": "4f3a9c1e:0:o17.0"}`: the order tier settling a buy it lost track of: the
  decrement's result if it was applied, otherwise the request is marked aborted so it never applies later.
- `{"op": "forget", "below": 120, "namespace": "4f3a9c1e:0"}`: the order group's watermark: every order below it is settled, so the
  results of their requests are dropped, and any request of theirs that still arrives is refused
  (`expired`): a late decrement can never apply after its order was settled without it.
A command with a `request_id` is applied at most once; a retry returns the first result (and a retry that
names another item than the first is refused as `request_mismatch`, never answered with the other's result).
Request ids are the order group's (`pygmy.common.request_ids`): the catalog accepts one namespace (cluster,
epoch) at a time — the first it sees, then a higher epoch of the same cluster (the orders database was
restored: the older namespace's results and watermark are dropped, its ids answered `expired`); an id of
another cluster is refused as `foreign_request`, and anything else is not a request id at all.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from pygmy.catalog.books import Book
from pygmy.catalog.store import CatalogStore
from pygmy.common.metrics import COMMANDS
from pygmy.common.request_ids import parse_request_id
from pygmy.replica.machine import CommandError

Result = dict[str, Any]


class CatalogStateMachine:
    def __init__(self, store: CatalogStore) -> None:
        self.store = store

    def apply(self, command: dict[str, Any]) -> Result:
        """`execute` in a transaction of its own (a catalog used outside a replicated group)."""
        with self.store.transaction():
            return self.execute(command)

    def execute(self, command: dict[str, Any]) -> Result:
        op = command.get("op")
        handler = _HANDLERS.get(op)  # type: ignore[arg-type]
        if handler is None:
            raise CommandError(f"unknown catalog command {op!r}")
        request_id = command.get("request_id")
        if op == "forget" and command.get("namespace") is not None:
            refused = admit_namespace(self.store, _namespace(command.get("namespace")))
            if refused is not None:
                return refused
        order_id: int | None = None
        if request_id is not None:
            parsed = parse_request_id(request_id) if isinstance(request_id, str) else None
            if parsed is None:
                raise CommandError("request_id must be one the order group issued: <cluster>:<epoch>:o<order>.<attempt>")
            refused = admit_namespace(self.store, parsed.namespace)
            if refused is not None:
                return refused
            order_id = parsed.order_id
            if order_id < self.store.setting("watermark"):
                return {"ok": False, "error": "expired"}
            previous = self.store.request(request_id)
            if previous is not None:
                item, result = previous
                if op == "decrement" and item is not None and command.get("item") != item:
                    return {"ok": False, "error": "request_mismatch"}
                return result
        result = handler(self.store, command)
        if request_id is not None:
            item = command.get("item") if isinstance(command.get("item"), int) else None
            self.store.record_request(request_id, result, order_id=order_id, item=item)
        COMMANDS.labels("catalog", op, "ok" if result.get("ok") else result.get("error", "failed")).inc()
        return result


def admit_namespace(store: CatalogStore, namespace: tuple[str, int]) -> Result | None:
    """None if requests of `namespace` may apply (adopting it if it is new), else the refusal."""
    known = store.order_namespace()
    if known == namespace:
        return None
    cluster, epoch = namespace
    if known is None or (cluster == known[0] and epoch > known[1]):
        # The first order group this catalog hears from, or the same one restored from a backup: order ids
        # start over, so the old namespace's results and watermark must not answer the new one's requests.
        if known is not None:
            store.forget_all_requests()
            store.set_setting("watermark", 0)
        store.set_order_namespace(cluster, epoch)
        return None
    if cluster == known[0]:
        return {"ok": False, "error": "expired"}  # an epoch before the last restore
    return {"ok": False, "error": "foreign_request"}


def _namespace(value: Any) -> tuple[str, int]:
    parsed = parse_request_id(f"{value}:o0.0") if isinstance(value, str) else None
    if parsed is None:
        raise CommandError("namespace must be <cluster>:<epoch>")
    return parsed.namespace


def _seed(store: CatalogStore, command: dict[str, Any]) -> Result:
    chunk, books, last = command.get("chunk"), command.get("books"), command.get("last")
    if not isinstance(chunk, int) or not isinstance(books, list) or not isinstance(last, bool):
        raise CommandError("seed needs chunk, books and last")
    if store.setting("seeded") or chunk != store.setting("seed_next"):
        return {"ok": False, "error": "not_in_turn", "next": store.setting("seed_next"), "seeded": bool(store.setting("seeded"))}
    try:
        parsed = [Book(**b) for b in books]
    except TypeError:
        raise CommandError("seed books need id, title, topic, stock and cost") from None
    store.add_books(parsed)
    store.set_setting("seed_next", chunk + 1)
    if last:
        store.set_setting("seeded", 1)
    return {"ok": True, "next": chunk + 1, "seeded": last}


def _forget(store: CatalogStore, command: dict[str, Any]) -> Result:
    below = command.get("below")
    if not isinstance(below, int) or isinstance(below, bool) or below < 0:
        raise CommandError("forget needs a watermark 'below' >= 0")
    current = store.setting("watermark")
    if below <= current:
        return {"ok": True, "watermark": current, "forgotten": 0}
    store.set_setting("watermark", below)
    return {"ok": True, "watermark": below, "forgotten": store.forget_requests_below(below)}


def _decrement(store: CatalogStore, command: dict[str, Any]) -> Result:
    if not store.setting("seeded"):
        # The initial catalog is still coming through the log: "no such book" would be a wrong answer.
        return {"ok": False, "error": "loading"}
    book = store.book(_item(command))
    if book is None:
        return {"ok": False, "error": "not_found"}
    if book.stock <= 0:
        return {"ok": False, "error": "out_of_stock", "book": book.to_json()}
    book = dataclasses.replace(book, stock=book.stock - 1)
    store.set_book(book, sold=1)
    return {"ok": True, "book": book.to_json()}


def _update(store: CatalogStore, command: dict[str, Any]) -> Result:
    validate_update(command)
    if not store.setting("seeded"):
        return {"ok": False, "error": "loading"}
    book = store.book(_item(command))
    if book is None:
        return {"ok": False, "error": "not_found"}
    delta = command.get("stock_delta", 0)
    cost = command.get("cost")
    cost = book.cost if cost is None else cost
    if book.stock + delta < 0:
        return {"ok": False, "error": "negative_stock", "book": book.to_json()}
    book = dataclasses.replace(book, stock=book.stock + delta, cost=float(cost))
    store.set_book(book, restocked=delta)
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


_HANDLERS = {"decrement": _decrement, "update": _update, "resolve": _resolve, "seed": _seed, "forget": _forget}
