"""One random bookstore operation through the public API, as a history entry for the linearizability checker.

Shared by the tests that record histories of concurrent buys, lookups and restocks (one copy each).
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp

from pygmy.checker.linearizability import Operation

NOT_CARRIED_OUT = "not carried out"
UNKNOWN_OUTCOME = "unknown outcome"


def failure(body: Any) -> str:
    """A 503 "unavailable" promises the request had no effect; anything else may have had one."""
    code = body.get("error", {}).get("code") if isinstance(body, dict) else None
    return NOT_CARRIED_OUT if code == "unavailable" else UNKNOWN_OUTCOME


def choose(item: int, roll: float, *, buy_below: float, lookup_below: float) -> Any:
    """A buy (roll < buy_below), a lookup (< lookup_below) or else a restock of one copy, as the model's input."""
    return ("buy", item) if roll < buy_below else ("lookup", item) if roll < lookup_below else ("restock", (item, 1))


async def perform(session: aiohttp.ClientSession, url: str, admin: str, op: Any) -> Any:
    """Run `op` through the frontend at `url`; its output for the model (or NOT_CARRIED_OUT / UNKNOWN_OUTCOME)."""
    kind, arg = op
    try:
        if kind == "buy":
            async with session.post(f"{url}/buy/{arg}") as r:
                body = await r.json()
                return {200: "ok", 409: "out_of_stock"}.get(r.status, failure(body))
        if kind == "lookup":
            async with session.get(f"{url}/lookup/{arg}") as r:
                body = await r.json()
                return body["stock"] if r.status == 200 else failure(body)
        headers = {"Authorization": f"Bearer {admin}"}
        async with session.post(f"{url}/admin/books/{arg[0]}", json={"stock_delta": arg[1]}, headers=headers) as r:
            body = await r.json()
            return None if r.status == 200 else failure(body)
    except (aiohttp.ClientError, asyncio.TimeoutError):
        return UNKNOWN_OUTCOME


def record(history: list[Operation], client: int, op: Any, call: float, output: Any, ret: float) -> None:
    """Add an operation to the history: dropped if it certainly had no effect, open-ended if unknown."""
    if output == NOT_CARRIED_OUT:
        return  # the API promises it had no effect: as if it was never called
    unknown = output == UNKNOWN_OUTCOME
    history.append(Operation(client, op, call, None if unknown else output, None if unknown else ret))
