"""`pygmy bench invalidation`: buys with and without cache invalidation (the reference's Table 4: with the
cache on every buy invalidates the book's entries; with it off there is nothing to invalidate), and the
latency of the first lookup and search after an invalidation (a miss) beside a hit."""

from __future__ import annotations

from typing import Callable

from pygmy.bench.prepare import ready_books
from pygmy.bench.sampling import Sample, per_tier, timed
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient


async def buys(target: Target, n: int, tick: Callable[[], None]) -> dict[str, dict[str, float]]:
    """Per-tier figures of N sequential buys."""
    async with PygmyClient(target.url, admin_token=target.admin_token) as client:
        item = (await ready_books(client, n))[0]
        samples = []
        for _ in range(n):
            samples.append(await timed(client, "buy", item))
            tick()
        return per_tier(samples)


async def misses(target: Target, n: int, tick: Callable[[], None]) -> dict[str, dict[str, dict[str, float]]]:
    """{"lookup hit"|"lookup miss"|"search hit"|"search miss": per-tier figures}: each round reads once to
    warm the cache, reads again (a hit), buys (which invalidates), and reads once more (the miss)."""
    found: dict[str, list[Sample]] = {"lookup hit": [], "lookup miss": [], "search hit": [], "search miss": []}
    async with PygmyClient(target.url, admin_token=target.admin_token) as client:
        item = (await ready_books(client, 2 * n))[0]
        topic = (await client.lookup(item)).body["topic"]
        for _ in range(n):
            for kind in ("lookup", "search"):
                await timed(client, kind, item, topic)
                found[f"{kind} hit"].append(await timed(client, kind, item, topic))
                await timed(client, "buy", item)
                found[f"{kind} miss"].append(await timed(client, kind, item, topic))
            tick()
    return {name: per_tier(samples) for name, samples in found.items()}
