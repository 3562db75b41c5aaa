"""Books and topics: the default catalog of the reference design and loading another from JSON or CSV."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Iterable

# Topic codes and their names; a custom catalog may bring topics of its own.
KNOWN_TOPICS: dict[str, str] = {"ds": "distributed systems", "gs": "graduate school"}


class CatalogFileError(ValueError):
    """A catalog file that cannot be loaded, with the line or entry that is wrong."""


@dataclasses.dataclass(frozen=True)
class Book:
    id: int
    title: str
    topic: str  # the topic's code
    stock: int
    cost: float

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# The reference's Table 1: items 1, 2, 5 are distributed systems, 3, 4, 6, 7 graduate school.
DEFAULT_BOOKS: tuple[Book, ...] = (
    Book(1, "How to get a good grade in 677 in 20 minutes a day", "ds", 100, 20.0),
    Book(2, "RPCs for Dummies", "ds", 100, 15.0),
    Book(3, "Xen and the Art of Surviving Graduate School", "gs", 100, 30.0),
    Book(4, "Cooking for the Impatient Graduate Student", "gs", 100, 25.0),
    Book(5, "How to finish Project 3 on time", "ds", 100, 18.0),
    Book(6, "Why theory classes are so hard", "gs", 100, 40.0),
    Book(7, "Spring in the Pioneer Valley", "gs", 100, 12.0),
)


def topic_code(topic: str) -> str:
    """The code for a topic given by code or by name, case-insensitively ("DS", "Distributed Systems")."""
    wanted = " ".join(topic.strip().lower().split())
    for code, name in KNOWN_TOPICS.items():
        if wanted in (code, name):
            return code
    return wanted


def topic_name(code: str) -> str:
    return KNOWN_TOPICS.get(code, code)


def load_catalog_file(path: Path) -> list[Book]:
    """Books from a JSON list of objects or a CSV with header id,title,topic,stock,cost."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise CatalogFileError(f"cannot read {path}: {exc.strerror}") from exc
    if path.suffix.lower() == ".csv":
        rows: Iterable[Any] = csv.DictReader(text.splitlines())
    else:
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise CatalogFileError(f"{path} is not valid JSON: {exc}") from exc
        if isinstance(rows, dict) and "books" in rows:
            rows = rows["books"]
        if not isinstance(rows, list):
            raise CatalogFileError(f"{path}: expected a JSON list of books")
    books = [_parse_book(position, row) for position, row in enumerate(rows, start=1)]
    _check_unique_ids(books)
    if not books:
        raise CatalogFileError(f"{path} holds no books")
    return books


def _parse_book(position: int, row: Any) -> Book:
    if not isinstance(row, dict):
        raise CatalogFileError(f"book {position}: expected an object with id, title, topic, stock, cost")
    try:
        book = Book(
            id=int(row["id"]),
            title=str(row["title"]).strip(),
            topic=topic_code(str(row["topic"])),
            stock=int(row["stock"]),
            cost=float(row["cost"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise CatalogFileError(f"book {position}: missing or malformed field ({exc})") from exc
    if book.id <= 0 or book.stock < 0 or not math.isfinite(book.cost) or book.cost < 0:
        raise CatalogFileError(f"book {position}: id must be positive, stock and cost not negative")
    if not book.title or not book.topic:
        raise CatalogFileError(f"book {position}: title and topic must not be empty")
    return book


def _check_unique_ids(books: list[Book]) -> None:
    seen: set[int] = set()
    for book in books:
        if book.id in seen:
            raise CatalogFileError(f"book id {book.id} appears twice")
        seen.add(book.id)
