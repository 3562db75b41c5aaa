"""The catalog's replicated state machine: `CatalogStateMachine`'s commands over the replica's SQLite file.

Queries (JSON objects), answered with the applied index they were read at:
- `{"op": "book", "item": 1}` -> `{"book": {...} | null}`
- `{"op": "search", "topic": "ds", "offset": 0, "limit": 100}` -> `{"topic": code | null, "items": [...], "total": n}`
- `{"op": "ledger", "offset": 0, "limit": 1000}` -> `{"books": [[id, stock, initial, restocked, sold], ...], "total": n}`
- `{"op": "seeded"}` -> `{"seeded": bool, "next": chunk}`
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable

import orjson

from pygmy.catalog.books import topic_code
from pygmy.catalog.state_machine import CatalogStateMachine
from pygmy.catalog.store import SCHEMA, TABLES, CatalogStore
from pygmy.replica.machine import CommandError, Json, TierMachine


class CatalogMachine(TierMachine):
    SCHEMA = SCHEMA

    def __init__(self, path: str | Path) -> None:
        super().__init__(path)
        self.store = CatalogStore(self.db)
        self.logic = CatalogStateMachine(self.store)

    def command(self, db: sqlite3.Connection, cmd: Json) -> Json:
        return self.logic.execute(cmd)

    def lookup(self, db: sqlite3.Connection, query: Json) -> Json:
        op = query.get("op")
        if op in ("book", "search") and not self.store.setting("seeded"):
            return {"loading": True}
        if op == "book":
            book = self.store.book(int(query["item"]))
            return {"book": book.to_json() if book else None}
        if op == "search":
            code = self.store.resolve_topic(topic_code(str(query["topic"])))
            if code is None:
                return {"topic": None, "items": [], "total": 0}
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 100))
            items = self.store.titles_in_topic(code, offset, limit)
            return {"topic": code, "items": items, "total": self.store.count_in_topic(code)}
        if op == "ledger":
            offset, limit = int(query.get("offset", 0)), int(query.get("limit", 1000))
            return {"books": self.store.ledger(offset, limit), "total": self.store.count_books()}
        if op == "seeded":
            return {"seeded": bool(self.store.setting("seeded")), "next": self.store.setting("seed_next")}
        raise CommandError(f"unknown catalog query {op!r}")

    def state_rows(self, db: sqlite3.Connection) -> Iterable[tuple[Any, ...]]:
        for table in TABLES:
            yield (table,)
            yield from self.store.rows(table)

    def summary(self, db: sqlite3.Connection) -> Json:
        row = db.execute("SELECT COUNT(*), COALESCE(SUM(stock), 0), COALESCE(SUM(sold), 0) FROM books").fetchone()
        return {"books": row[0], "stock": row[1], "sold": row[2], "watermark": self.store.setting("watermark")}

    def dump(self, db: sqlite3.Connection) -> bytes:
        return orjson.dumps({table: [list(r) for r in self.store.rows(table)] for table in TABLES})

    def load(self, db: sqlite3.Connection, data: bytes) -> None:
        tables = orjson.loads(data)
        for table in TABLES:
            self.store.replace_rows(table, tables.get(table, []))


def with_order_namespace(data: bytes, cluster: str, epoch: int) -> bytes:
    """A dump of the same catalog that accepts request ids of order namespace (cluster, epoch) (for a restore)."""
    tables = orjson.loads(data)
    tables["order_namespace"] = [[cluster, epoch]]
    return orjson.dumps(tables)
