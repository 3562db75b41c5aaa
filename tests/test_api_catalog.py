"""The catalog through the public API: the reference's seven books, search by topic, lookup, catalog files."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import pytest

from support.catalogs import (
    REFERENCE_BOOKS,
    book,
    generated_books,
    write_csv_catalog,
    write_json_catalog,
)
from support.cluster import Cluster
from support.http import Api, assert_error, ok_json

DS_ITEMS = {1, 2, 5}
GS_ITEMS = {3, 4, 6, 7}


def _ids(result: dict[str, Any]) -> set[int]:
    return {entry["id"] for entry in result["items"]}


# -- the default catalog -------------------------------------------------------------------------


@pytest.mark.parametrize("item", sorted(REFERENCE_BOOKS))
def test_default_catalog_holds_the_seven_books_of_the_reference(api: Api, item: int) -> None:
    title, topic = REFERENCE_BOOKS[item]
    found = api.lookup(item)
    assert set(found) >= {"id", "title", "topic", "stock", "cost"}
    assert (found["id"], found["title"], found["topic"]) == (item, title, topic)
    assert isinstance(found["stock"], int) and found["stock"] >= 0
    assert isinstance(found["cost"], (int, float)) and not isinstance(found["cost"], bool) and found["cost"] >= 0


def test_default_catalog_has_no_eighth_book(api: Api) -> None:
    assert_error(api.get("/lookup/8"), 404)


def test_search_by_code_lists_exactly_the_books_of_the_topic(api: Api) -> None:
    ds, gs = api.search("ds"), api.search("gs")
    assert ds["topic"] == "ds" and _ids(ds) == DS_ITEMS
    assert gs["topic"] == "gs" and _ids(gs) == GS_ITEMS
    for entry in ds["items"] + gs["items"]:
        assert entry["title"] == REFERENCE_BOOKS[entry["id"]][0]


@pytest.mark.parametrize(
    "asked, code",
    [
        ("DS", "ds"),
        ("Ds", "ds"),
        ("distributed systems", "ds"),
        ("Distributed Systems", "ds"),
        ("DISTRIBUTED SYSTEMS", "ds"),
        ("GS", "gs"),
        ("graduate school", "gs"),
        ("Graduate School", "gs"),
    ],
)
def test_search_takes_topic_by_code_or_name_case_insensitively(api: Api, asked: str, code: str) -> None:
    expected = DS_ITEMS if code == "ds" else GS_ITEMS
    by_path = ok_json(api.get(f"/search/{asked}"))
    by_query = ok_json(api.get("/search", params={"topic": asked}))
    for result in (by_path, by_query):
        assert result["topic"] == code, "the answer names the topic by its code"
        assert _ids(result) == expected


def test_search_by_query_parameter_answers_like_search_by_path(api: Api) -> None:
    assert ok_json(api.get("/search", params={"topic": "gs"})) == api.search("gs")


@pytest.mark.parametrize("topic", ["cooking", "d", "dss", "distributed", "graduate-school"])
def test_search_for_an_unknown_topic_is_404(api: Api, topic: str) -> None:
    assert_error(api.get(f"/search/{topic}"), 404)
    assert_error(api.get("/search", params={"topic": topic}), 404)


def test_lookup_by_query_parameter_answers_like_lookup_by_path(api: Api) -> None:
    # Stock may change between the two calls only if another test buys; none runs concurrently.
    assert ok_json(api.get("/lookup", params={"item": 3})) == api.lookup(3)


@pytest.mark.parametrize("item", [8, 99, 1000000, 2**63 - 1])
def test_lookup_of_an_unknown_item_is_404(api: Api, item: int) -> None:
    assert_error(api.get(f"/lookup/{item}"), 404)
    assert_error(api.get("/lookup", params={"item": item}), 404)


# -- another catalog from a file ---------------------------------------------------------------

CUSTOM_BOOKS = [
    book(10, "Paxos Made Simple, Annotated", "ds", 3, 9.5),
    book(11, "Consensus on a Budget", "Distributed Systems", 0, 12.0),  # topic by name
    book(12, "Thesis Writing, Unhurried", "GS", 8, 30.25),  # topic code in capitals
    book(20, "Surviving Qualifying Exams", "graduate school", 1, 0.0),
]


def _check_custom_catalog(c: Cluster) -> None:
    api = Api(c.frontend_url)
    assert _ids(api.search("ds")) == {10, 11}
    assert _ids(api.search("gs")) == {12, 20}
    assert api.lookup(11) == {"id": 11, "title": "Consensus on a Budget", "topic": "ds", "stock": 0, "cost": 12.0}
    assert api.lookup(12) == {"id": 12, "title": "Thesis Writing, Unhurried", "topic": "gs", "stock": 8, "cost": 30.25}
    assert_error(api.get("/lookup/1"), 404)  # the file replaces the default books


def test_catalog_file_in_json_replaces_the_default_books(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    path = write_json_catalog(tmp_path / "books.json", CUSTOM_BOOKS)
    _check_custom_catalog(make_cluster(catalog_file=path))


def test_catalog_file_in_csv_replaces_the_default_books(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    path = write_csv_catalog(tmp_path / "books.csv", CUSTOM_BOOKS)
    _check_custom_catalog(make_cluster(catalog_file=path))


def test_catalog_of_100000_books_in_csv_loads_and_searches(make_cluster: Callable[..., Cluster], tmp_path: Path) -> None:
    books = generated_books(100_000)
    path = write_csv_catalog(tmp_path / "big.csv", books)
    started = time.monotonic()
    c = make_cluster(catalog_file=path, ready_timeout=120)
    loaded = time.monotonic() - started
    api = Api(c.frontend_url)
    deadline = time.monotonic() + 120  # the catalog comes through the log in chunks: wait for its last one
    while api.get(f"/lookup/{books[-1]['id']}").status_code == 503 and time.monotonic() < deadline:
        time.sleep(0.2)
    loaded = time.monotonic() - started
    started = time.monotonic()
    first = api.search("ds")
    searched = time.monotonic() - started
    print(f"\n100,000-book CSV: loaded through the log in {loaded:.2f} s; a page of a 50,000-book topic in {searched:.3f} s")
    assert first["total"] == 50_000 and len(first["items"]) == first["limit"] == 100
    ids: set[int] = set()
    for offset in range(0, 50_000, 1000):
        page = ok_json(api.get(f"/search/ds?offset={offset}&limit=1000"))
        ids |= {item["id"] for item in page["items"]}
    assert ids == {b["id"] for b in books if b["topic"] == "ds"}
    last = books[-1]
    assert api.lookup(last["id"]) == last
