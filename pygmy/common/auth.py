"""Who may call what: the cluster secret guards tier-to-tier endpoints, the admin token guards updates."""

from __future__ import annotations

import hmac

from aiohttp import web

from pygmy.common.errors import ApiError, Handler

SECRET_HEADER = "X-Pygmy-Secret"
INTERNAL_PREFIX = "/internal/"


def internal_auth_middleware(secret: str):  # type: ignore[no-untyped-def]
    """Refuse /internal/ routes to anyone who does not present the cluster secret."""
    expected = secret.encode()

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith(INTERNAL_PREFIX):
            given = header_bytes(request.headers.get(SECRET_HEADER, ""))
            if not hmac.compare_digest(given, expected):
                raise ApiError(403, "forbidden", "internal endpoint: cluster secret required")
        return await handler(request)

    return middleware


def header_bytes(value: str) -> bytes:
    """A header's bytes as sent: aiohttp decodes bytes that are not UTF-8 as lone surrogates."""
    return value.encode("utf-8", "surrogateescape")


def require_admin(request: web.Request, token: str) -> None:
    """401 without a bearer token, 403 with the wrong one."""
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        raise ApiError(
            401,
            "unauthorized",
            "admin endpoint: send 'Authorization: Bearer <admin token>'",
            headers={"WWW-Authenticate": 'Bearer realm="pygmy-admin"'},
        )
    if not hmac.compare_digest(header_bytes(given.strip()), token.encode()):
        raise ApiError(403, "forbidden", "admin token is not valid")
