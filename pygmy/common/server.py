"""Build and run a node's aiohttp application with the shared middleware stack, on uvloop."""

from __future__ import annotations

import asyncio
import logging
import signal
import ssl
from typing import Awaitable, Callable, Sequence

from aiohttp import web

from pygmy.common.auth import internal_auth_middleware
from pygmy.common.connections import listen
from pygmy.common.errors import ApiError, Handler, error_middleware
from pygmy.common.logfiles import ClientErrorsInOneLine, log_handler
from pygmy.common.metrics import metrics_handler, metrics_middleware
from pygmy.common.probes import livez
from pygmy.common.timing import server_timing_middleware
from pygmy.config import ServerSettings

# Requests carry small JSON; anything bigger is refused with 413 before a handler runs.
MAX_BODY_BYTES = 64 * 1024

log = logging.getLogger(__name__)


@web.middleware
async def body_limit_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """413 for a body over the limit, declared or chunked, even on routes that never read their body."""
    if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
        raise ApiError(413, "payload_too_large", f"request body over {MAX_BODY_BYTES // 1024} KiB")
    if request.content_length is None and request.body_exists:
        # A chunked body declares no length: read it now (up to client_max_size, else 413), before any
        # handler acts, so an oversized one is refused even on a route that never reads its body.
        await request.read()
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


def run_with_app(
    app: web.Application, *, start: Callable[[], Awaitable[None]] | None = None,
    stop: Sequence[Callable[[], Awaitable[None]]] = (),
) -> None:
    """Start a node's background parts when its app starts, and stop them, in order, when it closes
    (the HTTP client pool last, as a stopping part may still call through it)."""

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        if start is not None:
            await start()
        yield
        for step in stop:
            await step()

    app.cleanup_ctx.append(lifecycle)


def configure_logging(name: str, level: int = logging.INFO) -> None:
    handler = log_handler()
    handler.addFilter(ClientErrorsInOneLine())
    logging.basicConfig(
        level=level,
        format=f"%(asctime)s {name} %(levelname)s %(name)s: %(message)s",
        handlers=[handler],
    )
    # One line per request is noise at this rate; errors still surface via the error middleware.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def serve(
    app_factory: Callable[[], Awaitable[web.Application]], host: str, port: int, name: str,
    ssl_context: ssl.SSLContext | None = None,
    settings: ServerSettings = ServerSettings(),
) -> None:
    """Run until SIGINT or SIGTERM, then close cleanly (on_cleanup hooks close databases)."""
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover - uvloop is a dependency on Linux
        pass
    asyncio.run(_serve(app_factory, host, port, name, ssl_context, settings))


async def _serve(
    app_factory: Callable[[], Awaitable[web.Application]], host: str, port: int, name: str,
    ssl_context: ssl.SSLContext | None,
    settings: ServerSettings,
) -> None:
    app = await app_factory()
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    # A deep accept backlog: bursts of new connections wait in the kernel rather than being dropped.
    server, guard = await listen(runner, host, port, settings, backlog=1024, ssl_context=ssl_context)
    log.info(
        "%s listening on %s://%s:%d (at most %d connections; request headers within %g s; idle keep-alive %g s)",
        name, "https" if ssl_context else "http", host, port, guard.cap, settings.header_timeout_s, settings.keepalive_s,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("%s stopping", name)
    server.close()
    await runner.cleanup()
