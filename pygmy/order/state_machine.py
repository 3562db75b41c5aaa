"""The order log as a state machine: `apply(command) -> result`, deterministic, durable per command.

A buy is two commands around the catalog's decrement, so a crash at any point leaves a record that
says what to finish (see `pygmy.order.buying`):
- `{"op": "begin", "item": 1, "time": "...", "idempotency_key": "k" | null}` opens a pending order
  (or returns the one already opened with that key);
- `{"op": "settle", "order_id": 7, "attempt": 0, "status": "done", "title": ..., "cost": ...}` records
  the outcome of that attempt; a settle for an order already settled or a stale attempt changes nothing.
The time comes in the command, not from the clock, so every replica applies the same thing.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from pygmy.order.store import Order, OrderStore

OUTCOMES = ("done", "out_of_stock", "unknown_item", "aborted")


class CommandError(ValueError):
    """A malformed command; nothing was changed."""


class OrderStateMachine:
    def __init__(self, store: OrderStore) -> None:
        self.store = store

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.get("op")
        with self.store.transaction():
            if op == "begin":
                return self._begin(command)
            if op == "settle":
                return self._settle(command)
        raise CommandError(f"unknown order command {op!r}")

    def _begin(self, command: dict[str, Any]) -> dict[str, Any]:
        item, time, key = command.get("item"), command.get("time"), command.get("idempotency_key")
        if not isinstance(item, int) or item <= 0 or not isinstance(time, str):
            raise CommandError("begin needs a positive integer item and a time")
        existing = self.store.by_key(key) if key is not None else None
        if existing is None:
            return {"order": _state(self.store.insert(item, time, key)), "created": True}
        if existing.item != item:
            return {"error": "key_reused", "order": _state(existing)}
        if existing.status == "aborted":
            # The earlier attempt was settled as "nothing taken"; a retry with the key tries again.
            retried = dataclasses.replace(existing, status="pending", attempt=existing.attempt + 1, time=time)
            self.store.update(retried)
            return {"order": _state(retried), "created": True}
        return {"order": _state(existing), "created": False}

    def _settle(self, command: dict[str, Any]) -> dict[str, Any]:
        order = self.store.get(int(command.get("order_id", 0)))
        status = command.get("status")
        if order is None or status not in OUTCOMES:
            raise CommandError("settle needs a known order_id and an outcome")
        if order.status != "pending" or order.attempt != command.get("attempt"):
            return {"order": _state(order), "changed": False}
        settled = dataclasses.replace(
            order, status=status, title=command.get("title"), cost=command.get("cost")
        )
        self.store.update(settled)
        return {"order": _state(settled), "changed": True}


def _state(order: Order) -> dict[str, Any]:
    return dataclasses.asdict(order)


def order_from_state(state: dict[str, Any]) -> Order:
    return Order(**state)
