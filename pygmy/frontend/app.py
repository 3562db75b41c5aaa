"""The public API: the only tier clients talk to. It validates input, routes to the backend tiers and
turns their answers (or their silence) into clear JSON responses."""

from __future__ import annotations

import asyncio
import logging
import uuid
from importlib import resources
from typing import Any

from aiohttp import web

from pygmy.common.auth import require_admin
from pygmy.common.errors import ApiError, bad_request, unavailable
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.params import parse_id, parse_idempotency_key, parse_page
from pygmy.common.server import make_app
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.common.timing import add_downstream
from pygmy.config import Config
from pygmy.frontend.readiness import readyz
from pygmy.replica.client import GroupClient

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
TIERS = web.AppKey("tiers", TierClient)
# A client per backend group: it knows the replicas, goes to the leader first and fails over to the others.
BACKENDS = web.AppKey("backends", dict)
OPENAPI = web.AppKey("openapi", bytes)
HEALTH_TIMEOUT = 0.5
UPDATE_FIELDS = {"stock_delta", "cost"}


async def _call(
    request: web.Request, tier: str, method: str, path: str, *, idempotent: bool = True, **kwargs: Any
) -> Any:
    """Call a backend group (any replica, the leader first); its errors become ours, its silence a 503."""
    group: GroupClient = request.app[BACKENDS][tier]
    try:
        reply = await group.call(method, path, idempotent=idempotent, **kwargs)
    except TierUnavailable as exc:
        log.warning("%s tier unreachable: %s", tier, exc)
        if exc.sent and method == "POST":
            raise unavailable(
                f"the {tier} tier stopped answering; the request may or may not have been carried out",
                code="outcome_unknown",
            ) from None
        raise unavailable(f"the {tier} tier cannot be reached; retry shortly") from None
    add_downstream(request, reply.server_timing)
    if reply.status == 200:
        return reply.body
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if reply.status in (400, 404, 409, 422) and isinstance(error, dict):
        raise ApiError(reply.status, str(error.get("code")), str(error.get("message")))
    if reply.status == 503 and isinstance(error, dict):
        raise unavailable(str(error.get("message")), code=str(error.get("code", "unavailable")))
    log.error("%s tier answered %d: %s", tier, reply.status, reply.body)
    raise unavailable(f"the {tier} tier could not answer; retry shortly")


async def search(request: web.Request) -> web.Response:
    topic = request.match_info.get("topic") or request.query.get("topic")
    if not topic or not topic.strip():
        raise bad_request("give a topic: /search/ds or /search?topic=ds", "bad_topic")
    if len(topic) > 200:
        raise bad_request("topic is too long", "bad_topic")
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"))
    params = {"topic": topic, "offset": str(offset), "limit": str(limit)}
    return json_response(await _call(request, "catalog", "GET", "/internal/search", params=params))


async def lookup(request: web.Request) -> web.Response:
    item = parse_id(request.match_info.get("item") or request.query.get("item"))
    return json_response(await _call(request, "catalog", "GET", f"/internal/books/{item}"))


async def buy(request: web.Request) -> web.Response:
    item = parse_id(request.match_info.get("item") or request.query.get("item"))
    # Without a key of the client's, the frontend makes one: then a buy whose answer was lost in a
    # failover is sent again to the next order replica and still opens one order.
    key = parse_idempotency_key(request.headers.get("Idempotency-Key")) or f"fe-{uuid.uuid4().hex}"
    order = await _call(request, "order", "POST", "/internal/buy", json={"item": item, "idempotency_key": key})
    return json_response(order)


async def get_order(request: web.Request) -> web.Response:
    order_id = parse_id(request.match_info["order_id"], "order_id")
    return json_response(await _call(request, "order", "GET", f"/internal/orders/{order_id}"))


async def list_orders(request: web.Request) -> web.Response:
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"))
    params = {"offset": str(offset), "limit": str(limit)}
    return json_response(await _call(request, "order", "GET", "/internal/orders", params=params))


async def update_book(request: web.Request) -> web.Response:
    require_admin(request, request.app[CONFIG].admin_token)
    item = parse_id(request.match_info["item"])
    body = await read_json_object(request)
    unknown = set(body) - UPDATE_FIELDS
    if unknown:
        raise bad_request(f"unknown field(s): {', '.join(sorted(unknown))}", "bad_body")
    result = await _call(
        request, "catalog", "POST", "/internal/apply", json={"op": "update", "item": item, **body}, idempotent=False
    )
    if result.get("ok"):
        return json_response(result["book"])
    if result.get("error") == "not_found":
        raise ApiError(404, "unknown_item", f"no book with id {item}")
    if result.get("error") == "loading":
        raise unavailable("the catalog is still loading its books; retry shortly", code="loading")
    stock = (result.get("book") or {}).get("stock")
    raise ApiError(409, "negative_stock", f"stock cannot go below 0 (it is {stock})")


async def health(request: web.Request) -> web.Response:
    """The status document (docs/contracts.md): every node of every tier, and each group's leader."""
    config = request.app[CONFIG]
    backends = [n for n in config.nodes if n.kind != "frontend"]
    answers = await asyncio.gather(*(_probe(request.app[TIERS], n.url) for n in backends))
    nodes: list[dict[str, Any]] = [
        {"kind": "frontend", "id": n.id, "name": n.name, "url": n.url, "status": "up", "role": "frontend"}
        for n in config.of_kind("frontend")
    ]
    for node, status in zip(backends, answers):
        nodes.append(status or {"kind": node.kind, "id": node.id, "name": node.name, "url": node.url,
                                "status": "down", "role": None})
    groups = {kind: _group(kind, [n for n in nodes if n["kind"] == kind]) for kind in ("catalog", "order")}
    if any(g["leader"] is None for g in groups.values()):
        overall = "unavailable"
    elif all(n["status"] == "up" for n in nodes):
        overall = "ok"
    else:
        overall = "degraded"
    return json_response({"status": overall, "groups": groups, "nodes": nodes})


def _group(kind: str, nodes: list[dict[str, Any]]) -> dict[str, Any]:
    leaders = [n for n in nodes if n.get("role") == "leader"]
    leader = max(leaders, key=lambda n: n["term"]) if leaders else None
    up = sum(1 for n in nodes if n["status"] == "up")
    return {
        "leader": leader["name"] if leader else None,
        "term": leader["term"] if leader else max((n.get("term") or 0 for n in nodes), default=0),
        "replicas": len(nodes),
        "up": up,
        "quorum": up > len(nodes) // 2,
    }


async def _probe(tiers: TierClient, url: str) -> dict[str, Any] | None:
    try:
        reply = await tiers.call("GET", f"{url}/internal/status", timeout=HEALTH_TIMEOUT)
    except TierUnavailable:
        return None
    return reply.body if reply.status == 200 and isinstance(reply.body, dict) else None


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def create_app(config: Config) -> web.Application:
    app = make_app("frontend", config.cluster_secret)
    app[CONFIG] = config
    tiers = TierClient(config.cluster_secret)
    app[TIERS] = tiers
    app[BACKENDS] = {tier: GroupClient(tiers, [n.url for n in config.of_kind(tier)]) for tier in ("catalog", "order")}
    app[OPENAPI] = resources.files("pygmy.frontend").joinpath("openapi.json").read_bytes()
    r = app.router
    r.add_get("/search", search)
    r.add_get("/search/{topic}", search)
    r.add_get("/lookup", lookup)
    r.add_get("/lookup/{item}", lookup)
    r.add_post("/buy", buy)
    # The reference's client bought with GET /buy?item=N. No HEAD: a HEAD must never buy anything.
    r.add_get("/buy", buy, allow_head=False)
    r.add_post("/buy/{item}", buy)
    r.add_get("/orders", list_orders)
    r.add_get("/orders/{order_id}", get_order)
    r.add_post("/admin/books/{item}", update_book)
    r.add_get("/health", health)
    r.add_get("/readyz", readyz)
    r.add_get("/openapi.json", openapi)

    async def close(_: web.Application) -> None:
        await tiers.close()

    app.on_cleanup.append(close)
    return app
