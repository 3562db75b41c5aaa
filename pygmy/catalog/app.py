"""The catalog node's HTTP face (internal only): query books, search a topic, apply commands."""

from __future__ import annotations

import logging
from pathlib import Path

from aiohttp import web

from pygmy.catalog.books import DEFAULT_BOOKS, load_catalog_file, topic_code
from pygmy.catalog.state_machine import CatalogStateMachine, CommandError
from pygmy.catalog.store import CatalogStore
from pygmy.common.errors import bad_request, not_found
from pygmy.common.params import parse_id
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.server import make_app
from pygmy.config import Config, Node

log = logging.getLogger(__name__)

MACHINE = web.AppKey("catalog_state_machine", CatalogStateMachine)


def open_catalog(path: Path, catalog_file: Path | None) -> CatalogStore:
    """Open the node's database, loading the default or given catalog the first time only."""
    store = CatalogStore(path)
    if store.is_empty():
        books = load_catalog_file(catalog_file) if catalog_file else list(DEFAULT_BOOKS)
        count = store.seed(books)
        log.info("loaded %d books from %s", count, catalog_file or "the default catalog")
    elif catalog_file:
        log.warning("%s already holds a catalog; ignoring --catalog %s", path, catalog_file)
    return store


async def get_book(request: web.Request) -> web.Response:
    item = parse_id(request.match_info["item"])
    book = request.app[MACHINE].store.book(item)
    if book is None:
        raise not_found(f"no book with id {item}", "unknown_item")
    return json_response(book.to_json())


async def search(request: web.Request) -> web.Response:
    topic = request.query.get("topic", "")
    if not topic.strip():
        raise bad_request("give a topic to search, e.g. ?topic=ds", "bad_topic")
    store = request.app[MACHINE].store
    code = store.resolve_topic(topic_code(topic))
    if code is None:
        raise not_found(f"no topic {topic!r}", "unknown_topic")
    return json_response({"topic": code, "items": store.titles_in_topic(code)})


async def apply_command(request: web.Request) -> web.Response:
    command = await read_json_object(request)
    try:
        result = request.app[MACHINE].apply(command)
    except CommandError as exc:
        raise bad_request(str(exc), "bad_body") from None
    if command.get("op") == "update":
        log.info("update of item %s: %s", command.get("item"), result.get("book") if result.get("ok") else result.get("error"))
    return json_response(result)


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "up"})


async def create_app(config: Config, node: Node, *, join: bool = False) -> web.Application:
    store = open_catalog(config.node_dir(node) / "catalog.sqlite3", config.catalog_file)
    app = make_app("catalog", config.cluster_secret)
    app[MACHINE] = CatalogStateMachine(store)
    app.router.add_get("/internal/books/{item}", get_book)
    app.router.add_get("/internal/search", search)
    app.router.add_post("/internal/apply", apply_command)
    app.router.add_get("/internal/health", health)

    async def close(_: web.Application) -> None:
        store.close()

    app.on_cleanup.append(close)
    return app
