"""A client for the public API, used by the CLI and the workload generator (aiohttp, one session)."""

from __future__ import annotations

import dataclasses
from typing import Any

import aiohttp
import orjson

DEFAULT_URL = "http://127.0.0.1:8080"


class ApiCallError(Exception):
    """The frontend answered with an error, or could not be reached (status 0)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: Any
    server_timing: str | None


class PygmyClient:
    def __init__(self, url: str = DEFAULT_URL, *, admin_token: str | None = None, timeout: float = 10.0) -> None:
        self.url = url.rstrip("/")
        self.admin_token = admin_token
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout))

    async def __aenter__(self) -> "PygmyClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._session.close()

    async def request(self, method: str, path: str, *, json: Any = None, headers: dict[str, str] | None = None,
                      params: dict[str, str] | None = None) -> Answer:
        data = orjson.dumps(json) if json is not None else None
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        hdrs.update(headers or {})
        try:
            async with self._session.request(method, self.url + path, data=data, headers=hdrs, params=params) as resp:
                raw = await resp.read()
                body = _decode(raw)
                answer = Answer(resp.status, body, resp.headers.get("Server-Timing"))
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ApiCallError(0, "unreachable", f"cannot reach the frontend at {self.url} ({exc or type(exc).__name__}); is the cluster running? (make run)") from None
        if answer.status >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ApiCallError(answer.status, error.get("code", "error"), error.get("message", str(body)))
        return answer

    async def search(self, topic: str) -> Answer:
        return await self.request("GET", "/search", params={"topic": topic})

    async def lookup(self, item: int) -> Answer:
        return await self.request("GET", f"/lookup/{item}")

    async def buy(self, item: int, idempotency_key: str | None = None) -> Answer:
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
        return await self.request("POST", f"/buy/{item}", headers=headers)

    async def update(self, item: int, *, delta: int | None = None, cost: float | None = None) -> Answer:
        body: dict[str, Any] = {}
        if delta is not None:
            body["stock_delta"] = delta
        if cost is not None:
            body["cost"] = cost
        headers = {"Authorization": f"Bearer {self.admin_token}"} if self.admin_token else None
        return await self.request("POST", f"/admin/books/{item}", json=body, headers=headers)

    async def orders(self, offset: int = 0, limit: int = 100) -> Answer:
        return await self.request("GET", "/orders", params={"offset": str(offset), "limit": str(limit)})

    async def order(self, order_id: int) -> Answer:
        return await self.request("GET", f"/orders/{order_id}")

    async def health(self) -> Answer:
        return await self.request("GET", "/health")


def _decode(raw: bytes) -> Any:
    try:
        return orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")
