"""Per-tier response times, measured as the reference did (its Tables 2 and 3).

N sequential requests of each kind; each tier's mean comes from the Server-Timing header (a tier's
time runs from receiving the request to sending the reply, downstream calls included); the client
tier's time is the whole round trip as the client sees it.
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Awaitable, Callable

from pygmy.client.api import Answer, PygmyClient

TIERS = ("catalog", "order", "frontend", "client")


def parse_server_timing(header: str | None) -> dict[str, float]:
    """`frontend;dur=0.41, catalog;dur=0.08` -> {"frontend": 0.41, "catalog": 0.08} (milliseconds)."""
    timings: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, params = part.strip().partition(";")
        for param in params.split(";"):
            key, _, value = param.strip().partition("=")
            if key == "dur" and name:
                timings[name] = float(value)
    return timings


async def measure(
    client: PygmyClient, requests: int, item: int, topic: str, tick: Callable[[], None] = lambda: None
) -> dict[str, dict[str, list[float]]]:
    """Samples in ms: {method: {tier: [..]}} for search, lookup and buy."""
    calls: dict[str, Callable[[], Awaitable[Answer]]] = {
        "search": lambda: client.search(topic),
        "lookup": lambda: client.lookup(item),
        "buy": lambda: client.buy(item),
    }
    samples: dict[str, dict[str, list[float]]] = {}
    for method, call in calls.items():
        per_tier: dict[str, list[float]] = defaultdict(list)
        for _ in range(requests):
            start = time.perf_counter()
            answer = await call()
            per_tier["client"].append((time.perf_counter() - start) * 1000.0)
            for tier, ms in parse_server_timing(answer.server_timing).items():
                per_tier[tier].append(ms)
            tick()
        samples[method] = dict(per_tier)
    return samples


def summarise(samples: dict[str, dict[str, list[float]]]) -> dict[str, dict[str, tuple[float, float]]]:
    """{method: {tier: (mean, p99)}}."""
    return {
        method: {tier: (statistics.fmean(v), _p99(v)) for tier, v in tiers.items() if v}
        for method, tiers in samples.items()
    }


def _p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
