"""The order log as a state machine: `execute(command) -> result`, deterministic (the replicated machine
runs it inside the transaction of its log entry; `apply` runs it in a transaction of its own).

A buy is two commands around the catalog's decrement, so a crash at any point leaves a record that
says what to finish (see `pygmy.order.buying`):
- `{"op": "begin", "item": 1, "time": "...", "idempotency_key": "k" | null}` opens a pending order
  (or returns the one already opened with that key);
- `{"op": "settle", "order_id": 7, "attempt": 0, "status": "done", "title": ..., "cost": ...}` records
  the outcome of that attempt; a settle for an order already settled or a stale attempt changes nothing;
- `{"op": "watermark", "time": "...", "keep_keys": 86400}` answers the lowest order id still pending (every
  order below it is settled: the catalog may forget their requests) and drops the idempotency keys of
  settled orders placed more than `keep_keys` seconds before `time`. A retry with a key is recognised for
  at least that long; a retry after it is a new buy.
A retry with the key of an aborted order opens a new order (a new id) and moves the key to it, so that an
order id is pending only once: below the watermark, no request of an order can still be sent.
The time comes in the command, not from the clock, so every replica applies the same thing.
"""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

from pygmy.order.store import Order, OrderStore
from pygmy.replica.machine import CommandError

OUTCOMES = ("done", "out_of_stock", "unknown_item", "aborted")
KEEP_KEYS_SECONDS = 24 * 3600


class OrderStateMachine:
    def __init__(self, store: OrderStore) -> None:
        self.store = store

    def apply(self, command: dict[str, Any]) -> dict[str, Any]:
        with self.store.transaction():
            return self.execute(command)

    def execute(self, command: dict[str, Any]) -> dict[str, Any]:
        op = command.get("op")
        if op == "begin":
            return self._begin(command)
        if op == "settle":
            return self._settle(command)
        if op == "watermark":
            return self._watermark(command)
        raise CommandError(f"unknown order command {op!r}")

    def _watermark(self, command: dict[str, Any]) -> dict[str, Any]:
        time, keep = command.get("time"), command.get("keep_keys", KEEP_KEYS_SECONDS)
        if not isinstance(time, str) or not isinstance(keep, int) or keep < 0:
            raise CommandError("watermark needs a time and keep_keys seconds")
        try:
            cutoff = datetime.datetime.fromisoformat(time) - datetime.timedelta(seconds=keep)
        except ValueError:
            raise CommandError("watermark time must be an ISO timestamp") from None
        forgotten = self.store.forget_keys_before(cutoff.isoformat(timespec="milliseconds"))
        return {"below": self.store.watermark(), "keys_forgotten": forgotten}

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
            # The earlier order was settled as "nothing taken"; a retry with the key is a new order.
            self.store.release_key(existing.order_id)
            return {"order": _state(self.store.insert(item, time, key)), "created": True}
        return {"order": _state(existing), "created": False}

    def _settle(self, command: dict[str, Any]) -> dict[str, Any]:
        order_id = command.get("order_id")
        order = self.store.get(order_id) if isinstance(order_id, int) else None
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
