"""The order group's replicated state machine: `OrderStateMachine`'s commands over the replica's SQLite file.

Queries (JSON objects), answered with the applied index they were read at:
- `{"op": "order", "order_id": 7}` -> `{"order": {...} | null}` (any status)
- `{"op": "orders", "offset": 0, "limit": 100}` -> `{"orders": [...], "total": n}` (done orders, oldest first)
- `{"op": "pending"}` -> `{"orders": [...]}` (what the settler must finish)
- `{"op": "ledger"}` -> `{"done_by_item": {"1": 3, ...}, "pending": n}` (for `pygmy check`)
"""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any, Iterable

import orjson

from pygmy.order.state_machine import OrderStateMachine
from pygmy.order.store import SCHEMA, OrderStore
from pygmy.replica.machine import CommandError, Json, TierMachine


class OrderMachine(TierMachine):
    SCHEMA = SCHEMA

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.store = OrderStore(self.db)
        self.logic = OrderStateMachine(self.store)

    def command(self, db: sqlite3.Connection, cmd: Json) -> Json:
        return self.logic.execute(cmd)

    def lookup(self, db: sqlite3.Connection, query: Json) -> Json:
        op = query.get("op")
        if op == "order":
            order = self.store.get(int(query["order_id"]))
            return {"order": dataclasses.asdict(order) if order else None}
        if op == "orders":
            orders, total = self.store.done(int(query.get("offset", 0)), int(query.get("limit", 100)))
            return {"orders": [o.to_json() for o in orders], "total": total}
        if op == "pending":
            return {"orders": [dataclasses.asdict(o) for o in self.store.pending()]}
        if op == "ledger":
            return {"done_by_item": {str(k): v for k, v in self.store.done_by_item().items()},
                    "pending": self.store.count_pending()}
        raise CommandError(f"unknown order query {op!r}")

    def state_rows(self, db: sqlite3.Connection) -> Iterable[tuple[Any, ...]]:
        yield from self.store.rows()
        yield ("epoch", self.store.epoch())

    def summary(self, db: sqlite3.Connection) -> Json:
        rows = db.execute("SELECT status, COUNT(*) FROM orders GROUP BY status ORDER BY status")
        return {"orders": {r[0]: r[1] for r in rows}}

    def dump(self, db: sqlite3.Connection) -> bytes:
        return orjson.dumps({"orders": [list(r) for r in self.store.rows()], "epoch": self.store.epoch()})

    def load(self, db: sqlite3.Connection, data: bytes) -> None:
        state = _state(data)
        self.store.replace_rows(state["orders"])
        self.store.set_epoch(state["epoch"])


def next_epoch(data: bytes) -> tuple[bytes, int]:
    """A dump of the same orders in the next epoch (for a restore) and that epoch."""
    state = _state(data)
    state["epoch"] += 1
    return orjson.dumps(state), state["epoch"]


def _state(data: bytes) -> dict[str, Any]:
    state = orjson.loads(data)
    if isinstance(state, list):  # a dump from before epochs: the order rows alone, epoch 0
        return {"orders": state, "epoch": 0}
    return {"orders": state["orders"], "epoch": int(state["epoch"])}
