"""The order node's HTTP face (internal only): buy, get an order, list orders."""

from __future__ import annotations

import asyncio
import contextlib

from aiohttp import web

from pygmy.common.errors import bad_request, not_found
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.params import parse_id, parse_idempotency_key, parse_page
from pygmy.common.server import make_app
from pygmy.common.tier_client import TierClient
from pygmy.common.timing import add_downstream
from pygmy.config import Config, Node
from pygmy.order.buying import BuyService
from pygmy.order.state_machine import OrderStateMachine
from pygmy.order.store import OrderStore

BUYS = web.AppKey("buy_service", BuyService)


async def buy(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    item, key = body.get("item"), parse_idempotency_key(body.get("idempotency_key"))
    if not isinstance(item, int) or isinstance(item, bool) or item <= 0:
        raise bad_request("item must be a positive integer", "bad_item")
    order, timings = await request.app[BUYS].buy(item, key)
    for timing in timings:
        add_downstream(request, timing)
    return json_response(order.to_json())


async def get_order(request: web.Request) -> web.Response:
    order_id = parse_id(request.match_info["order_id"], "order_id")
    order = request.app[BUYS].machine.store.get(order_id)
    if order is None or order.status != "done":
        raise not_found(f"no order with id {order_id}", "unknown_order")
    return json_response(order.to_json())


async def list_orders(request: web.Request) -> web.Response:
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"))
    orders, total = request.app[BUYS].machine.store.done(offset, limit)
    return json_response(
        {"orders": [o.to_json() for o in orders], "offset": offset, "limit": limit, "total": total}
    )


async def health(request: web.Request) -> web.Response:
    return json_response({"status": "up"})


async def create_app(config: Config, node: Node, *, join: bool = False) -> web.Application:
    store = OrderStore(config.node_dir(node) / "orders.sqlite3")
    tiers = TierClient(config.cluster_secret)
    service = BuyService(OrderStateMachine(store), tiers, config.serving("catalog").url)
    app = make_app("order", config.cluster_secret)
    app[BUYS] = service
    app.router.add_post("/internal/buy", buy)
    app.router.add_get("/internal/orders/{order_id}", get_order)
    app.router.add_get("/internal/orders", list_orders)
    app.router.add_get("/internal/health", health)

    async def settler(_: web.Application):  # type: ignore[no-untyped-def]
        task = asyncio.create_task(service.run_settler())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await tiers.close()
        store.close()

    app.cleanup_ctx.append(settler)
    return app
