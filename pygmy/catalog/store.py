"""The catalog's SQLite file: books (indexed by topic), topic names, and the results of applied requests."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any, Iterable, Iterator

import orjson

from pygmy.catalog.books import Book, topic_name
from pygmy.common.sqlite import Transaction, open_database

SCHEMA = """
CREATE TABLE IF NOT EXISTS books (
    id    INTEGER PRIMARY KEY,
    title TEXT    NOT NULL,
    topic TEXT    NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    cost  REAL    NOT NULL CHECK (cost >= 0)
);
CREATE INDEX IF NOT EXISTS books_by_topic ON books (topic, id);
CREATE TABLE IF NOT EXISTS topics (code TEXT PRIMARY KEY, name TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS topics_by_name ON topics (name);
-- One row per request id the state machine has applied, with its result: a retry gets the same answer.
CREATE TABLE IF NOT EXISTS requests (request_id TEXT PRIMARY KEY, result BLOB NOT NULL);
"""


class CatalogStore:
    def __init__(self, path: Path) -> None:
        self.conn = open_database(path)
        self.conn.executescript(SCHEMA)

    def is_empty(self) -> bool:
        return self.conn.execute("SELECT 1 FROM books LIMIT 1").fetchone() is None

    def seed(self, books: Iterable[Book]) -> int:
        """Load a whole catalog in one transaction (100,000 books take well under a second)."""
        rows = [(b.id, b.title, b.topic, b.stock, b.cost) for b in books]
        with self.transaction():
            self.conn.executemany("INSERT INTO books VALUES (?, ?, ?, ?, ?)", rows)
            topics = {(code, topic_name(code)) for _, _, code, _, _ in rows}
            self.conn.executemany("INSERT OR IGNORE INTO topics VALUES (?, ?)", sorted(topics))
        return len(rows)

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

    def titles_in_topic(self, code: str) -> list[dict[str, Any]]:
        rows = self.conn.execute("SELECT id, title FROM books WHERE topic = ? ORDER BY id", (code,))
        return [{"id": r["id"], "title": r["title"]} for r in rows]

    def set_book(self, book: Book) -> None:
        self.conn.execute(
            "UPDATE books SET stock = ?, cost = ? WHERE id = ?", (book.stock, book.cost, book.id)
        )

    def request_result(self, request_id: str) -> dict[str, Any] | None:
        row = self.conn.execute(
            "SELECT result FROM requests WHERE request_id = ?", (request_id,)
        ).fetchone()
        return orjson.loads(row["result"]) if row else None

    def record_request(self, request_id: str, result: dict[str, Any]) -> None:
        self.conn.execute(
            "INSERT INTO requests VALUES (?, ?)", (request_id, orjson.dumps(result))
        )

    def all_books(self) -> Iterator[Book]:
        for row in self.conn.execute("SELECT * FROM books ORDER BY id"):
            yield _book(row)

    def close(self) -> None:
        self.conn.close()


def _book(row: sqlite3.Row) -> Book:
    return Book(row["id"], row["title"], row["topic"], row["stock"], row["cost"])
