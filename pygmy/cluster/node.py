"""Running one node of the cluster in this process: what `pygmy serve KIND ID` does."""

from __future__ import annotations

from aiohttp import web

from pygmy.common.server import configure_logging, serve
from pygmy.config import Config, NodeKind


def run_node(config: Config, kind: NodeKind, node_id: int, *, join: bool = False) -> None:
    node = config.node(kind, node_id)
    configure_logging(node.name)

    async def factory() -> web.Application:
        if kind == "catalog":
            from pygmy.catalog.app import create_app as catalog_app

            return await catalog_app(config, node, join=join)
        if kind == "order":
            from pygmy.order.app import create_app as order_app

            return await order_app(config, node, join=join)
        from pygmy.frontend.app import create_app as frontend_app

        return await frontend_app(config)

    serve(factory, node.host, node.port, node.name)
