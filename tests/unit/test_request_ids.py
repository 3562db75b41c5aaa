"""The catalog accepts only request ids the order group issued, in the order group's current namespace
(cluster, epoch), and never answers one request with another's stored result."""

from __future__ import annotations

from pathlib import Path

import pytest

from pygmy.catalog.books import DEFAULT_BOOKS
from pygmy.catalog.state_machine import CatalogStateMachine, CommandError
from pygmy.catalog.store import CatalogStore
from pygmy.common.request_ids import RequestId, parse_request_id


@pytest.fixture
def catalog(tmp_path: Path) -> CatalogStateMachine:
    store = CatalogStore(tmp_path / "catalog.sqlite3")
    store.seed(DEFAULT_BOOKS)
    return CatalogStateMachine(store)


def stock(catalog: CatalogStateMachine, item: int) -> int:
    book = catalog.store.book(item)
    assert book is not None
    return book.stock


def decrement(catalog: CatalogStateMachine, item: int, request_id: str) -> dict:
    return catalog.apply({"op": "decrement", "item": item, "request_id": request_id})


def test_a_request_id_reads_back_as_written() -> None:
    rid = RequestId("4f3a9c1e0b7d2a65", 3, 17, 1)
    assert str(rid) == "4f3a9c1e0b7d2a65:3:o17.1" and parse_request_id(str(rid)) == rid
    assert parse_request_id("o17.1") is None and parse_request_id("c:x:o1.0") is None


@pytest.mark.parametrize("request_id", ["o1.0", "anything", "c:0:o1", "c:0:1.0", "c:-1:o1.0", "c d:0:o1.0"])
def test_an_id_the_order_group_would_never_issue_is_refused_and_changes_nothing(
    catalog: CatalogStateMachine, request_id: str
) -> None:
    with pytest.raises(CommandError, match="order group issued"):
        decrement(catalog, 1, request_id)
    assert stock(catalog, 1) == 100


def test_a_stored_result_is_never_replayed_for_another_item(catalog: CatalogStateMachine) -> None:
    assert decrement(catalog, 7, "c:0:o5.0")["book"]["id"] == 7
    assert decrement(catalog, 1, "c:0:o5.0") == {"ok": False, "error": "request_mismatch"}
    assert stock(catalog, 1) == 100 and stock(catalog, 7) == 99


def test_ids_of_another_cluster_are_refused(catalog: CatalogStateMachine) -> None:
    assert decrement(catalog, 1, "ours:0:o1.0")["ok"] is True
    assert decrement(catalog, 1, "theirs:0:o2.0") == {"ok": False, "error": "foreign_request"}
    assert decrement(catalog, 1, "theirs:9:o2.0") == {"ok": False, "error": "foreign_request"}
    assert catalog.apply({"op": "resolve", "request_id": "theirs:0:o1.0"}) == {"ok": False, "error": "foreign_request"}
    assert stock(catalog, 1) == 99


def test_a_restored_order_group_reusing_an_order_id_gets_its_own_copy(catalog: CatalogStateMachine) -> None:
    """The issue's scenario: order 5 bought item 7; the orders database is restored to before it and its
    next order, again number 5, buys item 1 — in the next epoch, so with a new request id."""
    decrement(catalog, 7, "c:0:o5.0")
    catalog.apply({"op": "forget", "below": 5, "namespace": "c:0"})
    again = decrement(catalog, 1, "c:1:o5.0")
    assert again["ok"] is True and again["book"]["id"] == 1 and again["book"]["title"] == DEFAULT_BOOKS[0].title
    assert stock(catalog, 1) == 99 and stock(catalog, 7) == 99
    # The watermark of the old epoch does not expire the new one's low ids ...
    assert decrement(catalog, 2, "c:1:o1.0")["ok"] is True
    # ... and the old epoch's ids are refused from now on, whatever the catalog held for them.
    assert decrement(catalog, 7, "c:0:o5.0") == {"ok": False, "error": "expired"}
    assert decrement(catalog, 7, "c:0:o9.0") == {"ok": False, "error": "expired"}
    assert catalog.apply({"op": "forget", "below": 100, "namespace": "c:0"}) == {"ok": False, "error": "expired"}
    assert catalog.store.setting("watermark") == 0


def test_the_watermark_applies_within_the_namespace(catalog: CatalogStateMachine) -> None:
    decrement(catalog, 1, "c:2:o1.0")
    assert catalog.apply({"op": "forget", "below": 3, "namespace": "c:2"})["watermark"] == 3
    assert decrement(catalog, 1, "c:2:o2.0") == {"ok": False, "error": "expired"}
    assert decrement(catalog, 1, "c:2:o3.0")["ok"] is True
