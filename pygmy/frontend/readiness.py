"""When a frontend is ready for traffic: both backend groups have a leader it can reach.

Without one, every buy (order) or lookup (catalog) would wait out the election and likely fail, so a
load balancer should send requests to another frontend. Every replica is asked at once, briefly.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pygmy.common.probes import READY_BUDGET, not_ready, ready
from pygmy.common.tier_client import TierClient, TierUnavailable


async def readyz(request: web.Request) -> web.Response:
    from pygmy.frontend.app import CONFIG, TIERS  # here: app.py imports this module

    config = request.app[CONFIG]
    tiers = request.app[TIERS]
    for kind in ("catalog", "order"):
        urls = [n.url for n in config.of_kind(kind)]
        leads = await asyncio.gather(*(_leads(tiers, url) for url in urls))
        if not any(leads):
            raise not_ready(f"the {kind} group has no leader this frontend can reach")
    return ready()


async def _leads(tiers: TierClient, url: str) -> bool:
    try:
        reply = await tiers.call("GET", f"{url}/internal/status", timeout=READY_BUDGET / 2)
    except TierUnavailable:
        return False
    return reply.status == 200 and isinstance(reply.body, dict) and reply.body.get("role") == "leader"
