"""Server-Timing: each tier reports its own duration, from receiving a request to sending the reply.

A tier's time includes its downstream calls, as the reference measured it. The downstream tiers'
own entries are passed along, so a buy answers with e.g.
`frontend;dur=1.92, order;dur=1.50, catalog;dur=0.31`.
"""

from __future__ import annotations

import time

from aiohttp import web

from pygmy.common.errors import Handler

DOWNSTREAM_KEY = web.AppKey("server_timing_downstream", list)
_TIER_KEY = "pygmy_tier"


def add_downstream(request: web.Request, header: str | None) -> None:
    """Remember a downstream tier's Server-Timing header, to pass along in this tier's reply."""
    if header:
        request.setdefault("server_timing", []).append(header)


def server_timing_middleware(tier: str):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        response = await handler(request)
        elapsed_ms = (time.perf_counter() - start) * 1000.0
        parts = [f"{tier};dur={elapsed_ms:.3f}", *request.get("server_timing", [])]
        response.headers["Server-Timing"] = ", ".join(parts)
        return response

    return middleware
