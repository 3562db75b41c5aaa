"""The catalog node's HTTP face (internal only): one replica of the catalog group.

Reads (`/internal/books/{id}`, `/internal/search`, `/internal/ledger`) are served at the read level the
caller asks (`pygmy.replica.http`: linearizable by default); writes (`POST /internal/apply`) go through the
group's log on the leader, forwarded there from any replica. At the cluster's first start the leader loads
the initial catalog through the log, in chunks, so every replica's books come from the log alone; until
that is done, reads answer 503 `loading`.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from aiohttp import web

from pygmy.catalog.books import DEFAULT_BOOKS, Book, load_catalog_file
from pygmy.catalog.leases import LeaseTable, invalidated_keys
from pygmy.catalog.machine import CatalogMachine
from pygmy.catalog.state_machine import validate_update
from pygmy.common.errors import bad_request, not_found, unavailable
from pygmy.common.jsonio import read_json_object
from pygmy.common.params import in_id_range, ints_fit_sqlite, parse_id, parse_page
from pygmy.common.server import make_app
from pygmy.common.tier_client import TierClient
from pygmy.common.tls import client_context
from pygmy.config import Config, Node
from pygmy.replica.group import NotLeader, ProposalDropped, Replica
from pygmy.replica.http import REPLICA, add_replica_routes, run_replica, answer, on_leader, read
from pygmy.replica.machine import CommandError
from pygmy.replica.storage_check import open_checked

log = logging.getLogger(__name__)

LEASES = web.AppKey("leases", LeaseTable)
SEED_CHUNK = 2000  # books per seed entry (~160 KB): small enough that applying one never stalls heartbeats
WRITE_OPS = {"decrement", "update", "resolve", "forget"}
MAX_SEARCH_PAGE = 1000


async def get_book(request: web.Request) -> web.Response:
    item = parse_id(request.match_info["item"])
    result, level = await read(request, {"op": "book", "item": item})
    _check_loaded(result)
    if result["book"] is None:
        raise not_found(f"no book with id {item}", "unknown_item")
    return answer(request, result["book"], index=result["index"], level=level)


async def search(request: web.Request) -> web.Response:
    topic = request.query.get("topic", "")
    if not topic.strip():
        raise bad_request("give a topic to search, e.g. ?topic=ds", "bad_topic")
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"), max_limit=MAX_SEARCH_PAGE)
    result, level = await read(request, {"op": "search", "topic": topic, "offset": offset, "limit": limit})
    _check_loaded(result)
    if result["topic"] is None:
        raise not_found(f"no topic {topic!r}", "unknown_topic")
    body = {"topic": result["topic"], "items": result["items"], "offset": offset, "limit": limit, "total": result["total"]}
    return answer(request, body, index=result["index"], level=level)


async def ledger(request: web.Request) -> web.Response:
    """Per book: stock, initial stock, restocks and copies sold (for `pygmy check`)."""
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"), max_limit=100_000)
    result, level = await read(request, {"op": "ledger", "offset": offset, "limit": limit})
    body = {"books": result["books"], "offset": offset, "limit": limit, "total": result["total"]}
    return answer(request, body, index=result["index"], level=level)


async def apply_command(request: web.Request) -> web.Response:
    command = await read_json_object(request)
    op = command.get("op")
    if not isinstance(op, str) or op not in WRITE_OPS:
        raise bad_request(f"unknown catalog command {op!r}", "bad_body")
    if not ints_fit_sqlite(command) or ("item" in command and not in_id_range(command["item"])):
        raise bad_request("item must be a positive integer below 2**63, and every number in range", "bad_body")
    if op == "update":
        try:
            validate_update(command)
        except CommandError as exc:
            raise bad_request(str(exc), "bad_body") from None
    replica = request.app[REPLICA]

    async def run() -> web.Response:
        try:
            # Frontends drop the answers this write changes before it is proposed (catalog/leases.py).
            async with request.app[LEASES].writing(invalidated_keys(command)):
                result = await replica.propose(command)
        except CommandError as exc:
            raise bad_request(str(exc), "bad_body") from None
        if op == "update":
            log.info("update of item %s: %s", command.get("item"), result.get("book") if result.get("ok") else result.get("error"))
        return answer(request, result, index=replica.machine.applied_index)

    # A command with a request id (or a watermark) may be sent again after an unknown outcome: the
    # machine applies it once. A restock without one may not.
    idempotent = command.get("request_id") is not None or op == "forget"
    return await on_leader(request, run, idempotent=idempotent)


async def grant_lease(request: web.Request) -> web.Response:
    """A frontend takes or renews its cache lease; only the leader grants (a follower forwards)."""
    body = await read_json_object(request)
    instance, url = body.get("frontend"), body.get("url")
    if not isinstance(instance, str) or not isinstance(url, str) or not url.startswith("http"):
        raise bad_request("give frontend (an instance id) and url (its invalidation URL)", "bad_body")

    async def run() -> web.Response:
        return answer(request, await request.app[LEASES].grant(instance, url))

    return await on_leader(request, run, idempotent=True)


async def health(request: web.Request) -> web.Response:
    return answer(request, {"status": "up"})


def _check_loaded(result: dict[str, Any]) -> None:
    if result.get("loading"):
        raise unavailable("the catalog is still loading its books; retry shortly", code="loading")


def initial_books(config: Config) -> list[Book]:
    return load_catalog_file(config.catalog_file) if config.catalog_file else list(DEFAULT_BOOKS)


async def seed_when_leader(replica: Replica, config: Config) -> None:
    """On the leader of a fresh cluster: propose the initial catalog, chunk by chunk, until it is in the log."""
    books: list[Book] | None = None
    while True:
        await asyncio.sleep(0.05)
        if not replica.is_leader():
            continue
        try:
            state = await replica.read_linearizable({"op": "seeded"})
            if state["seeded"]:
                return
            books = books if books is not None else initial_books(config)
            start = state["next"] * SEED_CHUNK
            chunk = books[start:start + SEED_CHUNK]
            last = start + SEED_CHUNK >= len(books)
            await replica.propose({"op": "seed", "chunk": state["next"], "books": [b.to_json() for b in chunk], "last": last})
            if last:
                log.info("%s loaded %d books through the log from %s", replica.node.name, len(books),
                         config.catalog_file or "the default catalog")
        except (NotLeader, ProposalDropped, TimeoutError):
            continue


async def create_app(config: Config, node: Node, *, join: bool = False) -> web.Application:
    node_dir = config.node_dir(node)
    node_dir.mkdir(parents=True, exist_ok=True)
    machine = open_checked(CatalogMachine, node_dir / "catalog.sqlite3", node_dir / "raft")
    replica = Replica(config, node, machine, join=join)
    tiers = TierClient(config.cluster_secret, ssl=client_context(config.tls))
    app = make_app("catalog", config.cluster_secret)
    add_replica_routes(app, replica, tiers)
    leases = LeaseTable(replica, tiers, config.cache)
    app[LEASES] = leases
    app.router.add_post("/internal/lease", grant_lease)
    app.router.add_get("/internal/books/{item}", get_book)
    app.router.add_get("/internal/search", search)
    app.router.add_get("/internal/ledger", ledger)
    app.router.add_post("/internal/apply", apply_command)
    app.router.add_get("/internal/health", health)

    async def background() -> None:
        await asyncio.gather(seed_when_leader(replica, config), leases.watch())

    run_replica(app, replica, tiers, background)
    return app



