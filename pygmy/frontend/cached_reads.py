"""The frontend's cached lookups and searches, and the route the catalog leader invalidates them through.

`cached` answers a read from the cache (`pygmy.frontend.cache`) or fills it with a linearizable catalog
read; `POST /internal/invalidate {phase: "begin"|"end", keys, token}` is how the leader tells this
frontend a write on those keys is about to be proposed, or is applied. The lease that allows serving
cached answers is kept by `pygmy.frontend.lease`.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Awaitable, Callable

import orjson
from aiohttp import web

from pygmy.common.errors import ApiError, bad_request
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.tier_client import Reply, TierClient
from pygmy.config import Config, Node
from pygmy.frontend.cache import Answer, Key, key_from_json
from pygmy.frontend.lease import LeaseKeeper
from pygmy.replica.http import INDEX

CACHE = web.AppKey("cache", LeaseKeeper)
# Test-only: this frontend never answers an invalidation (its channel from the catalog is cut, while its
# lease renewals still go through). Read once, at start (tests/test_cache.py).
DEAF_ENV = "PYGMY_TEST_DEAF_TO_INVALIDATIONS"
DEAF = web.AppKey("deaf", bool)
CACHE_HEADER = "X-Pygmy-Cache"  # "hit" or "miss": whether this answer came from the frontend's cache
INVALIDATE_PATH = "/internal/invalidate"
MAX_KEYS = 1000


async def cached(request: web.Request, key: Key, fetch: Callable[[], Awaitable[Reply]]) -> web.Response:
    """The read's answer, from the cache or from `fetch` (a linearizable catalog read)."""

    async def fill() -> Answer:
        try:
            reply = await fetch()
        except ApiError as exc:
            if exc.status == 404:  # an unknown item or topic: cached too (negative caching)
                return Answer(None, exc, 0)
            raise
        return Answer(orjson.dumps(reply.body), None, int(reply.headers.get(INDEX, 0) or 0))

    answer, hit = await request.app[CACHE].cache.get(key, fill)
    if answer.error is not None:
        raise ApiError(answer.error.status, answer.error.code, answer.error.message,
                       headers={CACHE_HEADER: "hit" if hit else "miss"})
    return web.Response(body=answer.body, content_type="application/json", headers={CACHE_HEADER: "hit" if hit else "miss"})


async def invalidate(request: web.Request) -> web.Response:
    if request.app[DEAF]:
        await asyncio.Event().wait()
    body = await read_json_object(request)
    phase, token, raw_keys = body.get("phase"), body.get("token"), body.get("keys")
    if phase not in ("begin", "end") or not isinstance(token, str) or not isinstance(raw_keys, list):
        raise bad_request("give phase (begin or end), token and keys", "bad_body")
    if len(raw_keys) > MAX_KEYS:
        raise bad_request(f"at most {MAX_KEYS} keys at once", "bad_body")
    try:
        keys = [key_from_json(k) for k in raw_keys]
    except (ValueError, TypeError) as exc:
        raise bad_request(str(exc), "bad_body") from None
    cache = request.app[CACHE].cache
    if phase == "begin":
        cache.begin(keys, token)
    else:
        cache.end(keys, token)
    return json_response({"ok": True})


def add_cache(app: web.Application, config: Config, node: Node, tiers: TierClient) -> None:
    """Give the frontend its cache, its lease keeper (started with the app) and the invalidation route."""
    keeper = LeaseKeeper(config.cache, tiers, [n.url for n in config.of_kind("catalog")], node.url + INVALIDATE_PATH)
    app[CACHE] = keeper
    app[DEAF] = os.environ.get(DEAF_ENV) == "1"
    app.router.add_post(INVALIDATE_PATH, invalidate)

    async def lifecycle(_: web.Application) -> Any:
        keeper.start()
        yield
        await keeper.stop()

    app.cleanup_ctx.append(lifecycle)
