"""`pygmy status` shows the answering frontend's own view: each replica's last heartbeat and whether it restarted
since the frontend started (two columns of the node table), and the cache's line."""

from __future__ import annotations

from rich.console import Console

from pygmy.ops.status import status_view

DOC = {
    "status": "degraded",
    "groups": {},
    "nodes": [{"kind": "catalog", "id": 0, "name": "catalog-0", "url": "http://127.0.0.1:1", "status": "up"},
              {"kind": "order", "id": 0, "name": "order-0", "url": "http://127.0.0.1:2", "status": "down"}],
    "frontend": {
        "replicas": [
            {"name": "catalog-0", "status": "up", "heartbeat_age": 0.25, "restarted": True, "restarts_seen": 2},
            {"name": "order-0", "status": "down", "heartbeat_age": None, "restarted": False, "restarts_seen": 0},
        ],
        "cache": None,
    },
}


def rendered(doc: dict) -> str:
    console = Console(width=120, record=True)
    console.print(status_view(doc, 120))
    return console.export_text()


def test_each_node_row_shows_the_frontends_last_heartbeat_and_the_restarts_it_saw() -> None:
    text = rendered(DOC)
    assert "heartbeat" in text and "restarted" in text
    assert sum("catalog-0" in line for line in text.splitlines()) == 1, "one row per node"
    catalog = next(line for line in text.splitlines() if "catalog-0" in line)
    assert "0.2 s ago" in catalog and "yes (2x)" in catalog
    order = next(line for line in text.splitlines() if "order-0" in line)
    assert "down" in order and "never" in order and "no" in order


def test_the_cache_line_says_off_without_a_cache_and_lists_its_status_with_one() -> None:
    assert "cache: off" in rendered(DOC)
    with_cache = {**DOC, "frontend": {**DOC["frontend"], "cache": {"size": 12, "hit_rate": 0.9}}}
    assert "cache: size 12, hit_rate 0.9" in rendered(with_cache)


def test_a_document_without_frontend_rows_shows_none() -> None:
    text = rendered({k: v for k, v in DOC.items() if k != "frontend"})
    assert "heartbeat" not in text and "restarted" not in text and "cache:" not in text
