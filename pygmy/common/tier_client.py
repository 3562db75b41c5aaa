"""The one HTTP client pool a process uses to call other tiers (aiohttp, keep-alive, secret attached).

An unreachable tier becomes `TierUnavailable`, which the caller turns into a 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl as ssl_module
from typing import Any

import aiohttp
import orjson

from pygmy.common.auth import SECRET_HEADER


class TierUnavailable(Exception):
    """The tier did not answer (refused, reset, or timed out).

    `sent` is False when the connection was never made, so the request certainly had no effect;
    True when it may have reached the tier (reset or timeout after sending): its outcome is unknown.
    """

    def __init__(self, message: str, *, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


@dataclasses.dataclass(frozen=True)
class Reply:
    status: int
    body: Any
    server_timing: str | None
    headers: dict[str, str] = dataclasses.field(default_factory=dict)


class TierClient:
    def __init__(self, secret: str, *, timeout: float = 5.0, per_host: int = 64, ssl: ssl_module.SSLContext | None = None) -> None:
        self._secret = secret
        self._ssl = ssl  # verifies https nodes against the cluster's CA (pygmy.common.tls)
        self._timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=3.0)
        # A bounded pool per tier: a burst of requests queues for a warm keep-alive connection instead
        # of opening hundreds of sockets at once and overflowing the next tier's accept backlog.
        self._per_host = per_host
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._per_host, ttl_dns_cache=300,
                                               ssl=self._ssl or True),
                timeout=self._timeout,
                headers={SECRET_HEADER: self._secret},
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        return self._session

    async def call(
        self,
        method: str,
        url: str,
        *,
        json: Any = None,
        raw: bytes | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        timeout: float | None = None,
    ) -> Reply:
        session = self._ensure_session()
        kwargs: dict[str, Any] = {"params": params, "headers": dict(headers or {})}
        if json is not None:
            raw = orjson.dumps(json)
        if raw is not None:
            kwargs["data"] = raw
            kwargs["headers"]["Content-Type"] = "application/json"
        if timeout is not None:
            kwargs["timeout"] = aiohttp.ClientTimeout(total=timeout, sock_connect=timeout)
        try:
            async with session.request(method, url, **kwargs) as resp:
                raw = await resp.read()
                body = orjson.loads(raw) if raw else None
                return Reply(resp.status, body, resp.headers.get("Server-Timing"), dict(resp.headers))
        except aiohttp.ClientConnectorError as exc:
            raise TierUnavailable(f"{method} {url}: cannot connect: {exc}", sent=False) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            raise TierUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
