"""Catalog files for `--catalog`, and the reference design's default books (its Table 1)."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

# The reference's Table 1; topic ds (distributed systems) for 1, 2, 5 and gs (graduate school) for 3, 4, 6, 7.
REFERENCE_BOOKS: dict[int, tuple[str, str]] = {
    1: ("How to get a good grade in 677 in 20 minutes a day", "ds"),
    2: ("RPCs for Dummies", "ds"),
    3: ("Xen and the Art of Surviving Graduate School", "gs"),
    4: ("Cooking for the Impatient Graduate Student", "gs"),
    5: ("How to finish Project 3 on time", "ds"),
    6: ("Why theory classes are so hard", "gs"),
    7: ("Spring in the Pioneer Valley", "gs"),
}
TOPIC_NAMES = {"ds": "distributed systems", "gs": "graduate school"}


def book(item: int, title: str, topic: str, stock: int, cost: float) -> dict[str, Any]:
    return {"id": item, "title": title, "topic": topic, "stock": stock, "cost": cost}


def generated_books(count: int, *, first_id: int = 1) -> list[dict[str, Any]]:
    """`count` books alternating between the two topics, with varied stock and cost."""
    return [
        book(i, f"Generated volume {i}", "ds" if i % 2 else "gs", i % 97, round(5 + (i % 50) * 0.75, 2))
        for i in range(first_id, first_id + count)
    ]


def write_json_catalog(path: Path, books: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(books, indent=1))
    return path


def write_csv_catalog(path: Path, books: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "title", "topic", "stock", "cost"])
        writer.writeheader()
        writer.writerows(books)
    return path
