"""Fast JSON in and out of HTTP messages (orjson), with clean 400s for bodies that are not JSON."""

from __future__ import annotations

import json
from typing import Any, Mapping

import orjson
from aiohttp import web

JSON_TYPE = "application/json"


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def json_response(
    body: Any, *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(body), status=status, headers=headers, content_type=JSON_TYPE)


async def read_json_object(request: web.Request) -> dict[str, Any]:
    """The request body as a JSON object, or an ApiError(400) saying what is wrong with it."""
    from pygmy.common.errors import bad_request  # local: errors imports this module

    raw = await request.read()
    if not raw:
        raise bad_request("request body must be a JSON object", "bad_body")
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise bad_request("request body is not valid JSON", "bad_body") from None
    if not isinstance(value, dict):
        raise bad_request("request body must be a JSON object", "bad_body")
    if _has_duplicate_keys(raw):
        raise bad_request("request body has a key more than once", "bad_body")
    return value


def _has_duplicate_keys(raw: bytes) -> bool:
    """orjson keeps the last of two equal keys silently; which one a reader sees must not be a guess."""
    found = False

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        keys = [k for k, _ in items]
        found = found or len(set(keys)) != len(keys)
        return dict(items)

    json.loads(raw, object_pairs_hook=pairs)
    return found
