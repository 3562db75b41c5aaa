"""The dashboard's buttons reach `pygmy up`'s control endpoint through the frontend (same origin, so the
page needs no CORS and talks to one host only). The caller's admin token is checked here and passed on;
the control endpoint checks it again (docs/contracts.md, "Control endpoint")."""

from __future__ import annotations

import asyncio
import logging
import re

import aiohttp
from aiohttp import web

from pygmy.common.auth import require_admin
from pygmy.common.errors import ApiError, not_found, unavailable
from pygmy.common.jsonio import json_response
from pygmy.config import Config

log = logging.getLogger(__name__)

# Only the control endpoint's own routes: node names, verbs, "load" and the partition lab's "partitions";
# nothing that could leave its path.
SAFE_TAIL = re.compile(r"^(nodes|load|partitions|partitions/[a-z]+-\d+|nodes/[a-z]+-\d+/(kill|restart|transfer))$")
# Kill waits for the process, transfer for a new leader: give them time.
PROXY_TIMEOUT = 15.0


def control_enabled(config: Config) -> bool:
    control = getattr(config, "control", None)
    return bool(control is not None and control.enabled)


async def proxy(request: web.Request, config: Config, session: aiohttp.ClientSession) -> web.Response:
    if not control_enabled(config):
        raise not_found("the control endpoint is off: start the cluster with `pygmy up --control`", "control_off")
    require_admin(request, config.admin_token)
    tail = request.match_info["tail"]
    if not SAFE_TAIL.match(tail):
        raise not_found(f"no control route {tail!r}", "unknown_control_route")
    body = await request.read()
    headers = {"Authorization": request.headers["Authorization"]}
    if body:
        headers["Content-Type"] = "application/json"
    url = f"{config.control.url}/control/{tail}"
    try:
        async with session.request(request.method, url, data=body or None, headers=headers,
                                   timeout=aiohttp.ClientTimeout(total=PROXY_TIMEOUT)) as resp:
            payload = await resp.json(content_type=None)
            status = resp.status
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as exc:
        log.warning("The control endpoint at %s did not answer %s %s: %s", config.control.url, request.method, tail, exc)
        if request.method == "GET":
            raise unavailable(f"the control endpoint of `pygmy up` ({config.control.url}) does not answer; retry shortly") from None
        # A kill, restart or cut that timed out may still have been carried out.
        raise unavailable(f"the control endpoint of `pygmy up` ({config.control.url}) did not answer; "
                          "the action may or may not have been carried out: look at the nodes before retrying",
                          code="outcome_unknown") from None
    if status >= 500 and not isinstance(payload, dict):
        raise ApiError(503, "unavailable", "the control endpoint failed; retry shortly")
    return json_response(payload, status=status)
