"""`pygmy bench latency`: N sequential searches, lookups and buys; each tier's mean, p50 and p99 from the
Server-Timing headers (the reference's Tables 2 and 3), with the cache on and, where it can be, off."""

from __future__ import annotations

from typing import Any, Callable

from pygmy.bench.prepare import ready_books
from pygmy.bench.sampling import Sample, per_tier, timed
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient

METHODS = ("search", "lookup", "buy")


async def run(target: Target, n: int, tick: Callable[[], None]) -> dict[str, dict[str, dict[str, float]]]:
    """{method: {tier: {mean, p50, p99, n}}} for N sequential requests of each method."""
    async with PygmyClient(target.url, admin_token=target.admin_token) as client:
        items = await ready_books(client, n)
        item = items[0]
        result: dict[str, Any] = {}
        for method in METHODS:
            samples: list[Sample] = []
            for _ in range(n):
                samples.append(await timed(client, method, item))
                tick()
            failed = [s for s in samples if not s.ok]
            if failed:
                raise RuntimeError(f"{len(failed)} of {n} {method} requests failed ({failed[0].error})")
            result[method] = per_tier(samples)
        return result
