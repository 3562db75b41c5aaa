"""The order node's HTTP face (internal only): one replica of the order group.

A buy runs on the order group's leader (any replica forwards it there); order queries are served at the
read level the caller asks (linearizable by default, see `pygmy.replica.http`).
"""

from __future__ import annotations


from aiohttp import web

from pygmy.common.deadline import caller_gives_up_at
from pygmy.common.errors import bad_request, not_found
from pygmy.common.jsonio import read_json_object
from pygmy.common.params import in_id_range, parse_id, parse_idempotency_key, parse_page
from pygmy.common.server import make_app
from pygmy.common.tier_client import TierClient
from pygmy.common.tls import client_context
from pygmy.common.timing import add_downstream
from pygmy.config import Config, Node
from pygmy.order.buying import BuyService
from pygmy.order.machine import OrderMachine
from pygmy.replica.client import GroupClient
from pygmy.replica.group import Replica
from pygmy.replica.http import REPLICA, add_replica_routes, run_replica, answer, on_leader, read
from pygmy.replica.storage_check import open_checked

BUYS = web.AppKey("buy_service", BuyService)


async def buy(request: web.Request) -> web.Response:
    # Read before any wait: the caller's deadline runs from when it sent the buy.
    gives_up_at = caller_gives_up_at(request.headers)
    body = await read_json_object(request)
    item, key = body.get("item"), parse_idempotency_key(body.get("idempotency_key"))
    if not in_id_range(item):
        raise bad_request("item must be a positive integer below 2**63", "bad_item")

    async def run() -> web.Response:
        order, timings = await request.app[BUYS].buy(item, key, gives_up_at)
        for timing in timings:
            add_downstream(request, timing)
        return answer(request, order.to_json(), index=request.app[REPLICA].machine.applied_index)

    # With a key, a buy may be sent again after an unknown outcome: the key opens one order only.
    return await on_leader(request, run, idempotent=key is not None)


async def get_order(request: web.Request) -> web.Response:
    order_id = parse_id(request.match_info["order_id"], "order_id")
    result, level = await read(request, {"op": "order", "order_id": order_id})
    order = result["order"]
    if order is None or order["status"] != "done":
        raise not_found(f"no order with id {order_id}", "unknown_order")
    body = {k: order[k] for k in ("order_id", "item", "title", "cost", "time")}
    return answer(request, body, index=result["index"], level=level)


async def list_orders(request: web.Request) -> web.Response:
    offset, limit = parse_page(request.query.get("offset"), request.query.get("limit"))
    result, level = await read(request, {"op": "orders", "offset": offset, "limit": limit})
    body = {"orders": result["orders"], "offset": offset, "limit": limit, "total": result["total"]}
    return answer(request, body, index=result["index"], level=level)


async def ledger(request: web.Request) -> web.Response:
    """Done orders per item and how many are pending (for `pygmy check`)."""
    result, level = await read(request, {"op": "ledger"})
    return answer(request, {"done_by_item": result["done_by_item"], "pending": result["pending"]},
                  index=result["index"], level=level)


async def health(request: web.Request) -> web.Response:
    return answer(request, {"status": "up"})


async def create_app(config: Config, node: Node, *, join: bool = False) -> web.Application:
    node_dir = config.node_dir(node)
    node_dir.mkdir(parents=True, exist_ok=True)
    machine = open_checked(OrderMachine, node_dir / "orders.sqlite3", node_dir / "raft")
    replica = Replica(config, node, machine, join=join)
    tiers = TierClient(config.cluster_secret, ssl=client_context(config.tls))
    catalog = GroupClient(tiers, [n.url for n in config.of_kind("catalog")])
    service = BuyService(replica, catalog)
    app = make_app("order", config.cluster_secret)
    add_replica_routes(app, replica, tiers)
    app[BUYS] = service
    app.router.add_post("/internal/buy", buy)
    app.router.add_get("/internal/orders/{order_id}", get_order)
    app.router.add_get("/internal/orders", list_orders)
    app.router.add_get("/internal/ledger", ledger)
    app.router.add_get("/internal/health", health)

    run_replica(app, replica, tiers, service.run_settler)
    return app



