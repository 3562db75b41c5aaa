"""`pygmy bench throughput`: requests/s and p50/p99 against concurrency (closed loop) and against a fixed
arrival rate (open loop) for one mix."""

from __future__ import annotations

from typing import Any, Callable, Sequence

from pygmy.bench.loops import Mix, closed_loop, open_loop, rate_row
from pygmy.bench.prepare import ready_books
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient


async def run(target: Target, mix: Mix, *, concurrency: Sequence[int], rates: Sequence[float], seconds: float,
              max_requests: int, tick: Callable[[], None]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    buys = (len(concurrency) * max_requests + int(sum(rates) * seconds)) if "buy" in mix.weights else 0
    async with PygmyClient(target.url, admin_token=target.admin_token) as client:
        items = await ready_books(client, buys)
        for c in concurrency:
            samples, elapsed = await closed_loop([client], c, mix, items, seconds=seconds, max_requests=max_requests, tick=tick)
            rows.append({"loop": "closed", "concurrency": c, "rate": None, **rate_row(samples, elapsed)})
        for rate in rates:
            samples, dropped = await open_loop([client], rate, mix, items, seconds=seconds, tick=tick)
            rows.append({"loop": "open", "concurrency": None, "rate": rate, **rate_row(samples, seconds), "dropped": dropped})
    return rows
