"""The public API: the only tier clients talk to. It validates input, routes to the backend tiers and
turns their answers (or their silence) into clear JSON responses."""

from __future__ import annotations

import logging
import uuid
from importlib import resources
from typing import Any

from aiohttp import web

from pygmy.common.auth import require_admin
from pygmy.common.deadline import client_deadline
from pygmy.common.errors import NOT_CARRIED_OUT, ApiError, bad_request, unavailable
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.params import parse_id, parse_idempotency_key, parse_page
from pygmy.common.server import make_app, run_with_app
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.common.tls import client_context
from pygmy.common.timing import add_downstream
from pygmy.config import Config, Node
from pygmy.frontend.cached_reads import CACHE, add_cache, cached
from pygmy.frontend.health import CACHE_STATUS_KEY, HealthMonitor
from pygmy.replica.client import GroupClient, RetryBudget
from pygmy.web import add_web_routes
from pygmy.frontend.readiness import readyz

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", Config)
TIERS = web.AppKey("tiers", TierClient)
# A client per backend group: it knows the replicas, goes to the leader first and fails over to the others.
BACKENDS = web.AppKey("backends", dict)
OPENAPI = web.AppKey("openapi", bytes)
HEALTH = web.AppKey("health", HealthMonitor)
UPDATE_FIELDS = {"stock_delta", "cost"}


async def _call(
    request: web.Request, tier: str, method: str, path: str, *, idempotent: bool = True, **kwargs: Any
) -> Any:
    """Call a backend group (any replica, the leader first); its errors become ours, its silence a 503."""
    return (await _call_reply(request, tier, method, path, idempotent=idempotent, **kwargs)).body


async def _call_reply(
    request: web.Request, tier: str, method: str, path: str, *, idempotent: bool = True, **kwargs: Any
) -> Any:
    """`_call`, but the whole 200 reply (its headers carry the catalog index a cache entry records)."""
    group: GroupClient = request.app[BACKENDS][tier]
    # Reads spread over the healthy replicas (each serves linearizable reads); writes go to the leader.
    # Retries and waits for a leader stop after an election plus a lease (group.deadline); a client's
    # X-Pygmy-Deadline-Ms may shorten that, and then the frontend stops listening at it too.
    wanted = client_deadline(request.headers)
    deadline = group.deadline if wanted is None else min(wanted, group.deadline)
    try:
        reply = await group.call(method, path, idempotent=idempotent, prefer_leader=method != "GET",
                                 deadline=deadline, hard_deadline=wanted is not None, **kwargs)
    except TierUnavailable as exc:
        log.warning("%s tier unreachable: %s", tier, exc)
        if exc.sent and method == "POST":
            raise unavailable(
                f"the {tier} tier stopped answering; the request may or may not have been carried out",
                code="outcome_unknown",
            ) from None
        raise unavailable(f"the {tier} tier cannot be reached or has no leader; nothing was carried out; retry shortly") from None
    add_downstream(request, reply.server_timing)
    if reply.status == 200:
        return reply
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    if reply.status in (400, 404, 409, 422) and isinstance(error, dict):
        raise ApiError(reply.status, str(error.get("code")), str(error.get("message")))
    if reply.status == 503 and isinstance(error, dict):
        raise unavailable(str(error.get("message")), code=str(error.get("code", "unavailable")))
    log.error("%s tier answered %d: %s", tier, reply.status, reply.body)
    if method == "POST":
        # It received the request and failed somewhere in it: the write may have been carried out.
        raise unavailable(
            f"the {tier} tier failed while handling the request; it may or may not have been carried out",
            code="outcome_unknown",
        )
    raise unavailable(f"the {tier} tier could not answer; retry shortly")


async def search(request: web.Request) -> web.Response:
    topic = request.match_info.get("topic") or request.query.get("topic")
    if not topic or not topic.strip():
        raise bad_request("give a topic: /search/ds or /search?topic=ds", "bad_topic")
    if len(topic) > 200:
        raise bad_request("topic is too long", "bad_topic")
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"))
    client_deadline(request.headers)  # a malformed deadline is a 400 even when the cache would answer
    params = {"topic": topic, "offset": str(offset), "limit": str(limit)}
    return await cached(request, ("search", topic, offset, limit),
                        lambda: _call_reply(request, "catalog", "GET", "/internal/search", params=params))


async def lookup(request: web.Request) -> web.Response:
    item = parse_id(request.match_info.get("item") or request.query.get("item"))
    client_deadline(request.headers)  # a malformed deadline is a 400 even when the cache would answer
    return await cached(request, ("book", item), lambda: _call_reply(request, "catalog", "GET", f"/internal/books/{item}"))


async def buy(request: web.Request) -> web.Response:
    item = parse_id(request.match_info.get("item") or request.query.get("item"))
    # Without a key of the client's, the frontend makes one: then a buy whose answer was lost in a
    # failover is sent again to the next order replica and still opens one order.
    client_key = parse_idempotency_key(request.headers.get("Idempotency-Key"))
    key = client_key or f"fe-{uuid.uuid4().hex}"
    try:
        order = await _call(request, "order", "POST", "/internal/buy", json={"item": item, "idempotency_key": key})
    except ApiError as exc:
        if client_key is not None and exc.status == 503 and exc.code in NOT_CARRIED_OUT:
            # This request did nothing, but an earlier one under the client's key may have (a client retries
            # under its key after an unknown outcome), and a group without a leader cannot say.
            raise unavailable(
                "this buy was not carried out, but one sent earlier under the same Idempotency-Key may or may "
                "not have been; retry with the same key to find out",
                code="outcome_unknown",
            ) from None
        raise
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
    """The status document (docs/contracts.md) from the heartbeats' last answers: no call per request."""
    cache = request.app.get(CACHE_STATUS_KEY)
    await request.app[HEALTH].refresh_if_leaderless()
    return json_response(request.app[HEALTH].document(cache.cache_status() if cache is not None else None))


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=request.app[OPENAPI], content_type="application/json")


async def create_app(config: Config, node: Node | None = None) -> web.Application:
    app = make_app("frontend", config.cluster_secret)
    app[CONFIG] = config
    tiers = TierClient(config.cluster_secret, ssl=client_context(config.tls))
    app[TIERS] = tiers
    app[HEALTH] = monitor = HealthMonitor(tiers, config)
    app[BACKENDS] = {tier: _group_client(config, tiers, monitor, tier) for tier in ("catalog", "order")}
    app[OPENAPI] = resources.files("pygmy.frontend").joinpath("openapi.json").read_bytes()
    add_cache(app, config, node or config.of_kind("frontend")[0], tiers)
    app[CACHE_STATUS_KEY] = app[CACHE]
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
    add_web_routes(app)  # the storefront at / and the dashboard at /dashboard (pygmy/web)

    run_with_app(app, start=monitor.start, stop=[monitor.stop, tiers.close])
    return app


def _group_client(config: Config, tiers: TierClient, monitor: HealthMonitor, tier: str) -> GroupClient:
    settings = config.frontend
    return GroupClient(tiers, [n.url for n in config.of_kind(tier)], deadline=settings.election_wait_ms / 1000,
                       health=monitor, budget=RetryBudget(settings.retry_budget))
