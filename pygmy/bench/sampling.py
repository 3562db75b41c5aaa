"""One timed request and the statistics of many: the client's round trip and each tier's Server-Timing."""

from __future__ import annotations

import dataclasses
import statistics
import time
import uuid
from typing import Any

from pygmy.client.api import ApiCallError, PygmyClient
from pygmy.client.measure import parse_server_timing

TIERS = ("catalog", "order", "frontend", "client")


@dataclasses.dataclass(frozen=True)
class Sample:
    kind: str
    ok: bool
    start: float  # time.monotonic() when sent
    end: float
    tiers: dict[str, float]  # ms per tier (the client's round trip under "client")
    error: str = ""


async def timed(client: PygmyClient, kind: str, item: int = 1, topic: str = "ds") -> Sample:
    """Send one search, lookup or buy and time it; an error is a Sample with ok False, never an exception."""
    start = time.monotonic()
    perf = time.perf_counter()
    try:
        if kind == "search":
            answer = await client.search(topic)
        elif kind == "lookup":
            answer = await client.lookup(item)
        else:
            answer = await client.buy(item, idempotency_key=f"bench-{uuid.uuid4().hex}")
    except ApiCallError as exc:
        return Sample(kind, False, start, time.monotonic(), {"client": (time.perf_counter() - perf) * 1000}, exc.code)
    tiers = parse_server_timing(answer.server_timing)
    tiers["client"] = (time.perf_counter() - perf) * 1000
    return Sample(kind, True, start, time.monotonic(), tiers)


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by the nearest-rank method; nan for no values."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


def summary(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values) if values else float("nan"),
        "p50": percentile(values, 50),
        "p99": percentile(values, 99),
        "n": float(len(values)),
    }


def per_tier(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """{tier: {mean, p50, p99, n}} over the answered samples."""
    ok = [s for s in samples if s.ok]
    return {tier: summary([s.tiers[tier] for s in ok if tier in s.tiers]) for tier in TIERS
            if any(tier in s.tiers for s in ok)}


def round_floats(value: Any, digits: int = 3) -> Any:
    if isinstance(value, float):
        return round(value, digits)
    if isinstance(value, dict):
        return {k: round_floats(v, digits) for k, v in value.items()}
    if isinstance(value, list):
        return [round_floats(v, digits) for v in value]
    return value
