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
from pygmy.common.tcp_liveness import watched_socket


POOL_WAIT = 3.0  # seconds a request may wait for a pooled connection (and connect) before it is refused


async def _headers_sent(_: aiohttp.ClientSession, context: Any, __: Any) -> None:
    context.trace_request_ctx["sent"] = True


# Only a request whose headers went out can have reached the tier; before that, its outcome is known: none.
_SENT_TRACE = aiohttp.TraceConfig()
_SENT_TRACE.on_request_headers_sent.append(_headers_sent)
_SENT_TRACE.freeze()


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
    def __init__(
        self, secret: str, *, timeout: float = 5.0, per_host: int = 64, pool_wait: float = POOL_WAIT,
        ssl: ssl_module.SSLContext | None = None,
    ) -> None:
        self._secret = secret
        self._ssl = ssl  # verifies https nodes against the cluster's CA (pygmy.common.tls)
        # `connect` bounds the wait for a pooled connection plus connecting: a request that cannot get one
        # in time is refused as never sent (load shedding). The answer then has `timeout` seconds of its
        # own (sock_read), so time spent queueing for the pool never turns a sent request into a timeout.
        self._timeout = aiohttp.ClientTimeout(total=None, connect=pool_wait, sock_connect=3.0, sock_read=timeout)
        # A bounded pool per tier: a burst of requests queues for a warm keep-alive connection instead
        # of opening hundreds of sockets at once and overflowing the next tier's accept backlog.
        self._per_host = per_host
        self._session: aiohttp.ClientSession | None = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        # Created lazily: a ClientSession must be made inside the running event loop.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=self._per_host, ttl_dns_cache=300,
                                               ssl=self._ssl or True, socket_factory=watched_socket),
                trace_configs=[_SENT_TRACE],
                timeout=self._timeout,
                headers={SECRET_HEADER: self._secret},
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
            # aiohttp resends a GET/PUT/DELETE once, on a new connection to the same host, when a pooled
            # connection fails under it. Behind a partition that second try costs another DEAD_PEER_SECONDS
            # on the replica that just proved unreachable; our caller (GroupClient) retries on the next
            # replica instead. A private attribute (aiohttp's own test client sets it): if it goes away,
            # only this speed-up is lost.
            self._session._retry_connection = False
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
        progress: dict[str, bool] = {}  # set by the trace once the request's headers are on the wire
        try:
            async with session.request(method, url, trace_request_ctx=progress, **kwargs) as resp:
                raw = await resp.read()
                body = orjson.loads(raw) if raw else None
                return Reply(resp.status, body, resp.headers.get("Server-Timing"), dict(resp.headers))
        except aiohttp.ClientConnectorError as exc:
            # Normally never sent; but should a library resend on a fresh connection after a pooled one
            # failed, the first try may have arrived.
            sent = progress.get("sent", False)
            raise TierUnavailable(f"{method} {url}: cannot connect: {exc}", sent=sent) from exc
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            sent = progress.get("sent", False)
            what = "" if sent else " (never sent: no connection in time)"
            raise TierUnavailable(f"{method} {url}: {type(exc).__name__}: {exc}{what}", sent=sent) from exc

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
