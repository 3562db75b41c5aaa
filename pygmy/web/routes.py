"""The storefront (`/`) and the cluster dashboard (`/dashboard`), served by the frontend.

Plain HTML, CSS and a little JavaScript shipped in the package (pygmy/web/static/): no build step, no
CDN, no template engine. The pages talk to the same public JSON API as every other client; the
dashboard adds a live stream (Server-Sent Events) and, when `pygmy up --control` runs, its buttons.
"""

from __future__ import annotations

import contextlib
import ipaddress
from importlib import resources
from pathlib import Path
from typing import Any

import aiohttp
import orjson
from aiohttp import web
from aiohttp_sse import sse_response

from pygmy.catalog.books import KNOWN_TOPICS
from pygmy.common.errors import not_found
from pygmy.common.jsonio import json_response
from pygmy.config import Config
from pygmy.web.control_proxy import control_enabled, proxy
from pygmy.web.monitor import Monitor

STATIC = Path(str(resources.files("pygmy.web").joinpath("static")))
WEB = web.AppKey("web", dict)
PING_SECONDS = 15


def _config(app: web.Application) -> Config:
    from pygmy.frontend.app import CONFIG  # imported here: pygmy.frontend.app imports this module

    return app[CONFIG]


def _page(name: str):  # type: ignore[no-untyped-def]
    async def handler(request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC / name, headers={"Cache-Control": "no-cache"})

    return handler


# The shipped files, listed once: a name from the URL is looked up here, never joined onto a path.
FILES = {p.name: p for p in STATIC.iterdir() if p.is_file()}


async def static_file(request: web.Request) -> web.FileResponse:
    path = FILES.get(request.match_info["name"])
    if path is None:
        raise not_found(f"no file {request.match_info['name']!r} in the web pages", "unknown_file")
    return web.FileResponse(path, headers={"Cache-Control": "no-cache"})


async def topics(request: web.Request) -> web.Response:
    return json_response({"topics": [{"code": code, "name": name} for code, name in KNOWN_TOPICS.items()]})


async def dashboard_config(request: web.Request) -> web.Response:
    config = _config(request.app)
    kinds: dict[str, list[str]] = {}
    for node in config.nodes:
        kinds.setdefault(node.kind, []).append(node.name)
    return json_response({"control": control_enabled(config), "tiers": kinds})


def _own_status_url(request: web.Request) -> str:
    """This frontend's own /health, at the address the request came in on (loopback if bound to any)."""
    host, port = request.transport.get_extra_info("sockname")[:2] if request.transport else ("127.0.0.1", 8080)
    with contextlib.suppress(ValueError):
        if ipaddress.ip_address(host).is_unspecified:
            host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/health"


def _monitor(request: web.Request) -> Monitor:
    state = request.app[WEB]
    if state.get("monitor") is None:
        state["monitor"] = Monitor(_config(request.app), _own_status_url(request))
    monitor: Monitor = state["monitor"]
    return monitor


def _json(value: Any) -> str:
    return orjson.dumps(value).decode()


async def stream(request: web.Request) -> web.StreamResponse:
    """`hello` with the last minutes (chart, events, latest status), then a `frame` about every second."""
    monitor = _monitor(request)
    queue = monitor.subscribe()
    try:
        async with sse_response(request) as sse:
            sse.ping_interval = PING_SECONDS
            await sse.send(_json(monitor.backlog()), event="hello")
            while sse.is_connected():
                await sse.send(_json(await queue.get()), event="frame")
    except ConnectionResetError:
        pass  # the page closed: nothing to answer
    finally:
        monitor.unsubscribe(queue)
    return sse


async def control(request: web.Request) -> web.Response:
    return await proxy(request, _config(request.app), request.app[WEB]["session"])


def add_web_routes(app: web.Application) -> None:
    """Register the storefront, the dashboard, their static files and the dashboard's API on `app`."""
    app[WEB] = {"monitor": None, "session": None}
    r = app.router
    r.add_get("/", _page("store.html"))
    r.add_get("/dashboard", _page("dashboard.html"))
    r.add_get("/store/topics", topics)
    r.add_get("/dashboard/api/config", dashboard_config)
    r.add_get("/dashboard/api/stream", stream)
    r.add_route("*", "/dashboard/api/control/{tail:.+}", control)
    r.add_get("/web/{name}", static_file)

    async def lifecycle(app: web.Application):  # type: ignore[no-untyped-def]
        app[WEB]["session"] = aiohttp.ClientSession()
        yield
        monitor: Monitor | None = app[WEB]["monitor"]
        if monitor is not None:
            await monitor.close()
        await app[WEB]["session"].close()

    app.cleanup_ctx.append(lifecycle)
