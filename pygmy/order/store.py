"""The order log's SQLite file: one row per buy, from its first durable step to its outcome."""

from __future__ import annotations

import dataclasses
import sqlite3
from pathlib import Path
from typing import Any

from pygmy.common.sqlite import Transaction, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS orders (
    order_id        INTEGER PRIMARY KEY,
    item            INTEGER NOT NULL,
    title           TEXT,
    cost            REAL,
    time            TEXT    NOT NULL,
    -- pending: the catalog may or may not have taken the copy yet; done: sold;
    -- out_of_stock / unknown_item: nothing taken; aborted: settled as not taken, may be retried.
    status          TEXT    NOT NULL,
    attempt         INTEGER NOT NULL DEFAULT 0,
    idempotency_key TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS orders_by_status ON orders (status, order_id);
-- `epoch`: bumped by every restore of this database from a backup, so request ids are never issued twice.
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""


@dataclasses.dataclass(frozen=True)
class Order:
    order_id: int
    item: int
    title: str | None
    cost: float | None
    time: str
    status: str
    attempt: int
    idempotency_key: str | None

    def to_json(self) -> dict[str, Any]:
        return {"order_id": self.order_id, "item": self.item, "title": self.title, "cost": self.cost, "time": self.time}


class OrderStore:
    def __init__(self, where: Path | sqlite3.Connection) -> None:
        self.conn = open_database(where) if isinstance(where, Path) else where
        self.conn.executescript(SCHEMA)

    def transaction(self) -> Transaction:
        return Transaction(self.conn)

    def get(self, order_id: int) -> Order | None:
        row = self.conn.execute("SELECT * FROM orders WHERE order_id = ?", (order_id,)).fetchone()
        return _order(row) if row else None

    def by_key(self, key: str) -> Order | None:
        row = self.conn.execute("SELECT * FROM orders WHERE idempotency_key = ?", (key,)).fetchone()
        return _order(row) if row else None

    def insert(self, item: int, time: str, key: str | None) -> Order:
        cur = self.conn.execute(
            "INSERT INTO orders (item, time, status, idempotency_key) VALUES (?, ?, 'pending', ?)",
            (item, time, key),
        )
        order = self.get(int(cur.lastrowid or 0))
        assert order is not None
        return order

    def update(self, order: Order) -> None:
        self.conn.execute(
            "UPDATE orders SET title = ?, cost = ?, status = ?, attempt = ?, time = ? WHERE order_id = ?",
            (order.title, order.cost, order.status, order.attempt, order.time, order.order_id),
        )

    def done(self, offset: int, limit: int) -> tuple[list[Order], int]:
        rows = self.conn.execute(
            "SELECT * FROM orders WHERE status = 'done' ORDER BY order_id LIMIT ? OFFSET ?",
            (limit, offset),
        ).fetchall()
        total = self.conn.execute("SELECT COUNT(*) FROM orders WHERE status = 'done'").fetchone()[0]
        return [_order(r) for r in rows], int(total)

    def release_key(self, order_id: int) -> None:
        self.conn.execute("UPDATE orders SET idempotency_key = NULL WHERE order_id = ?", (order_id,))

    def forget_keys_before(self, time: str) -> int:
        """Drop the idempotency keys of settled orders placed before `time` (an ISO timestamp)."""
        return self.conn.execute(
            "UPDATE orders SET idempotency_key = NULL WHERE idempotency_key IS NOT NULL "
            "AND status != 'pending' AND time < ?", (time,),
        ).rowcount

    def watermark(self) -> int:
        """The lowest pending order id, or the next id if none is pending: every order below is settled."""
        row = self.conn.execute("SELECT MIN(order_id) FROM orders WHERE status = 'pending'").fetchone()
        if row[0] is not None:
            return int(row[0])
        return int(self.conn.execute("SELECT COALESCE(MAX(order_id), 0) + 1 FROM orders").fetchone()[0])

    def done_by_item(self) -> dict[int, int]:
        rows = self.conn.execute("SELECT item, COUNT(*) FROM orders WHERE status = 'done' GROUP BY item")
        return {int(r[0]): int(r[1]) for r in rows}

    def count_pending(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM orders WHERE status = 'pending'").fetchone()[0])

    def rows(self) -> Any:
        return (tuple(r) for r in self.conn.execute("SELECT * FROM orders ORDER BY order_id"))

    def replace_rows(self, rows: list[list[Any]]) -> None:
        self.conn.execute("DELETE FROM orders")
        if rows:
            self.conn.executemany(f"INSERT INTO orders VALUES ({', '.join('?' * len(rows[0]))})", rows)

    def epoch(self) -> int:
        row = self.conn.execute("SELECT value FROM settings WHERE key = 'epoch'").fetchone()
        return int(row[0]) if row else 0

    def set_epoch(self, epoch: int) -> None:
        self.conn.execute(
            "INSERT INTO settings VALUES ('epoch', ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (epoch,)
        )

    def pending(self) -> list[Order]:
        rows = self.conn.execute("SELECT * FROM orders WHERE status = 'pending' ORDER BY order_id")
        return [_order(r) for r in rows]

    def close(self) -> None:
        self.conn.close()


def _order(row: sqlite3.Row) -> Order:
    return Order(
        row["order_id"], row["item"], row["title"], row["cost"], row["time"],
        row["status"], row["attempt"], row["idempotency_key"],
    )
