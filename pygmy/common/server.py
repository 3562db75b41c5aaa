"""Build and run a node's aiohttp application with the shared middleware stack, on uvloop."""

from __future__ import annotations

import asyncio
import logging
import signal
from typing import Awaitable, Callable

from aiohttp import web

from pygmy.common.auth import internal_auth_middleware
from pygmy.common.errors import ApiError, Handler, error_middleware
from pygmy.common.metrics import metrics_handler, metrics_middleware
from pygmy.common.probes import livez
from pygmy.common.timing import server_timing_middleware

# Requests carry small JSON; anything bigger is refused with 413 before a handler runs.
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger(__name__)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a declared body over the limit, even on routes that never read their body."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"request body over {MAX_BODY_BYTES // 1024} KiB")
    return await handler(request)


def make_app(tier: str, cluster_secret: str) -> web.Application:
    # Order matters: metrics see the final status, errors become JSON before timing is stamped.
    app = web.Application(
        client_max_size=MAX_BODY_BYTES,
        middlewares=[
            metrics_middleware(tier),
            server_timing_middleware(tier),
            error_middleware,
            body_limit_middleware,
            internal_auth_middleware(cluster_secret),
        ],
    )
    app.router.add_get("/metrics", metrics_handler)
    app.router.add_get("/livez", livez)
    return app


def configure_logging(name: str, level: int = logging.INFO) -> None:
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
    )
    # One line per request is noise at this rate; errors still surface via the error middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def serve(
    app_factory: Callable[[], Awaitable[web.Application]], host: str, port: int, name: str
) -> None:
    """Run until SIGINT or SIGTERM, then close cleanly (on_cleanup hooks close databases)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(_serve(app_factory, host, port, name))


async def _serve(
    app_factory: Callable[[], Awaitable[web.Application]], host: str, port: int, name: str
) -> None:
    app = await app_factory()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # A deep accept backlog: bursts of new connections wait in the kernel rather than being dropped.
    site = web.TCPSite(runner, host, port, reuse_address=True, backlog=1024)
    await site.start()
    log.info("%s listening on http://%s:%d", name, host, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    await runner.cleanup()
