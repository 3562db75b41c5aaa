"""The catalog's tables: books (indexed by topic), topic names, the results of applied requests, and a few
settings (how far the initial catalog is loaded, the order group's watermark).

Each book also counts its `initial` stock, the sum of its restocks (`restocked`) and the copies `sold`, so
that `initial + restocked - sold = stock` can be checked on every replica and against the order log.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from pygmy.catalog.books import Book, topic_name
from pygmy.common.sqlite import Transaction, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    id        INTEGER PRIMARY KEY,
    title     TEXT    NOT NULL,
    topic     TEXT    NOT NULL,
    stock     INTEGER NOT NULL CHECK (stock >= 0),
    cost      REAL    NOT NULL CHECK (cost >= 0),
    initial   INTEGER NOT NULL DEFAULT 0,
    restocked INTEGER NOT NULL DEFAULT 0,
    sold      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS books_by_topic ON books (topic, id);
CREATE TABLE IF NOT EXISTS topics (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS topics_by_name ON topics (name);
-- One row per request id the state machine has applied, with its result: a retry gets the same answer.
-- `order_id` (from ids "o<order>.<attempt>") lets the order group's watermark prune the table.
CREATE TABLE IF NOT EXISTS requests (
    request_id TEXT PRIMARY KEY,
    order_id   INTEGER,
    item       INTEGER,
    result     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS requests_by_order ON requests (order_id);
CREATE TABLE IF NOT EXISTS settings (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
-- At most one row: the namespace (cluster, epoch) of the order group whose request ids are accepted.
CREATE TABLE IF NOT EXISTS order_namespace (cluster TEXT PRIMARY KEY, epoch INTEGER NOT NULL);
"""
TABLES = ("books", "topics", "requests", "settings", "order_namespace")


class CatalogStore:
    def __init__(self, where: Path | sqlite3.Connection) -> None:
        self.conn = open_database(where) if isinstance(where, Path) else where
        self.conn.executescript(SCHEMA)

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM books LIMIT 1").fetchone() is None

    def seed(self, books: Iterable[Book]) -> int:
        """Load a whole catalog in one transaction (100,000 books take well under a second)."""
        with self.transaction():
            added = self.add_books(books)
            self.set_setting("seeded", 1)  # the whole catalog is in, as after the last seed chunk
            return added

    def add_books(self, books: Iterable[Book]) -> int:
        """Insert new books (inside the caller's transaction); their stock is their initial stock."""
        rows = [(b.id, b.title, b.topic, b.stock, b.cost, b.stock) for b in books]
        self.conn.executemany(
            "INSERT OR IGNORE INTO books (id, title, topic, stock, cost, initial) VALUES (?, ?, ?, ?, ?, ?)", rows
        )
        topics = {(code, topic_name(code)) for _, _, code, _, _, _ in rows}
        self.conn.executemany("INSERT OR IGNORE INTO topics VALUES (?, ?)", sorted(topics))
        return len(rows)

    def setting(self, key: str, default: int = 0) -> int:
        row = self.conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else default

    def set_setting(self, key: str, value: int) -> None:
        self.conn.execute(
            "INSERT INTO settings VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value)
        )

    def transaction(self) -> Transaction:
        return Transaction(self.conn)

    def book(self, book_id: int) -> Book | None:
        row = self.conn.execute("SELECT * FROM books WHERE id = ?", (book_id,)).fetchone()
        return _book(row) if row else None

    def resolve_topic(self, topic: str) -> str | None:
        row = self.conn.execute(
            "SELECT code FROM topics WHERE code = ? OR name = ? LIMIT 1", (topic, topic)
        ).fetchone()
        return row["code"] if row else None

    def titles_in_topic(self, code: str, offset: int = 0, limit: int = -1) -> list[dict[str, Any]]:
        rows = self.conn.execute(
            "SELECT id, title FROM books WHERE topic = ? ORDER BY id LIMIT ? OFFSET ?", (code, limit, offset)
        )
        return [{"id": r["id"], "title": r["title"]} for r in rows]

    def count_in_topic(self, code: str) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM books WHERE topic = ?", (code,)).fetchone()[0])

    def set_book(self, book: Book, *, restocked: int = 0, sold: int = 0) -> None:
        self.conn.execute(
            "UPDATE books SET stock = ?, cost = ?, restocked = restocked + ?, sold = sold + ? WHERE id = ?",
            (book.stock, book.cost, restocked, sold, book.id),
        )

    def request(self, request_id: str) -> tuple[int | None, dict[str, Any]] | None:
        """(item, result) of an applied request id, or None."""
        row = self.conn.execute(
            "SELECT item, result FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return (row["item"], orjson.loads(row["result"])) if row else None

    def record_request(
        self, request_id: str, result: dict[str, Any], *, order_id: int | None = None, item: int | None = None
    ) -> None:
        self.conn.execute(
            "INSERT INTO requests VALUES (?, ?, ?, ?)", (request_id, order_id, item, orjson.dumps(result).decode())
        )

    def order_namespace(self) -> tuple[str, int] | None:
        row = self.conn.execute("SELECT cluster, epoch FROM order_namespace").fetchone()
        return (str(row[0]), int(row[1])) if row else None

    def set_order_namespace(self, cluster: str, epoch: int) -> None:
        self.conn.execute("DELETE FROM order_namespace")
        self.conn.execute("INSERT INTO order_namespace VALUES (?, ?)", (cluster, epoch))

    def forget_all_requests(self) -> int:
        return self.conn.execute("DELETE FROM requests").rowcount

    def forget_requests_below(self, order_id: int) -> int:
        return self.conn.execute("DELETE FROM requests WHERE order_id < ?", (order_id,)).rowcount

    def ledger(self, offset: int, limit: int) -> list[list[int]]:
        """[id, stock, initial, restocked, sold] per book, by id."""
        rows = self.conn.execute(
            "SELECT id, stock, initial, restocked, sold FROM books ORDER BY id LIMIT ? OFFSET ?", (limit, offset)
        )
        return [list(r) for r in rows]

    def count_books(self) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM books").fetchone()[0])

    def rows(self, table: str) -> Iterator[tuple[Any, ...]]:
        """Every row of one of TABLES, in primary-key order (for snapshots and digests)."""
        assert table in TABLES
        order = {"books": "id", "topics": "code", "requests": "request_id", "settings": "key", "order_namespace": "cluster"}[table]
        for row in self.conn.execute(f"SELECT * FROM {table} ORDER BY {order}"):
            yield tuple(row)

    def replace_rows(self, table: str, rows: list[list[Any]]) -> None:
        assert table in TABLES
        self.conn.execute(f"DELETE FROM {table}")
        if rows:
            marks = ", ".join("?" * len(rows[0]))
            self.conn.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)

    def all_books(self) -> Iterator[Book]:
        for row in self.conn.execute("SELECT * FROM books ORDER BY id"):
            yield _book(row)

    def close(self) -> None:
        self.conn.close()


def _book(row: sqlite3.Row) -> Book:
    return Book(row["id"], row["title"], row["topic"], row["stock"], row["cost"])
