"""A hello-world route on the frontend's own server stack (make_app's middleware, uvloop, orjson): the
ceiling one Python process reaches here, for benchmarks/cache_bench.py to compare cached lookups with.

    python -m benchmarks.hello_server PORT
"""

from __future__ import annotations

import sys

from aiohttp import web

from pygmy.common.jsonio import json_response
from pygmy.common.server import configure_logging, make_app, serve


async def hello(_: web.Request) -> web.Response:
    return json_response({"hello": "world"})


async def factory() -> web.Application:
    app = make_app("hello", "unused-secret")
    app.router.add_get("/hello", hello)
    return app


if __name__ == "__main__":
    configure_logging("hello")
    serve(factory, "127.0.0.1", int(sys.argv[1]), "hello")
