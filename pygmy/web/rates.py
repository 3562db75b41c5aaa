"""Requests/s, errors/s and p99 latency per tier, from two scrapes of every node's Prometheus /metrics.

Each node counts its own requests (pygmy/common/metrics.py); a tier's rate is the sum over its nodes of
how much each counter grew between two scrapes. A node that restarted starts its counters again at 0,
so a counter that went down counts from 0, not as a negative rate.
"""

from __future__ import annotations

import dataclasses
import math

from prometheus_client.parser import text_string_to_metric_families

REQUESTS = "pygmy_http_requests"
LATENCY = "pygmy_http_request_seconds"
# The dashboard's own polling and page loads are not the traffic people want to watch.
PROBE_ROUTES = frozenset({"/metrics", "/health", "/internal/status", "/dashboard/api/stream"})
PROBE_PREFIXES = ("/dashboard", "/web/", "/store/")


@dataclasses.dataclass
class NodeCounters:
    """One node's cumulative counters at one scrape (probe routes left out)."""

    requests: float = 0.0
    errors: float = 0.0  # answers with a 5xx status: the system failed, not the caller
    buckets: dict[float, float] = dataclasses.field(default_factory=dict)  # le -> cumulative count


@dataclasses.dataclass(frozen=True)
class TierRates:
    requests_per_s: float
    errors_per_s: float
    p99_ms: float | None  # None when the tier answered nothing in the interval

    def to_json(self) -> dict[str, float | None]:
        p99 = None if self.p99_ms is None else round(self.p99_ms, 2)
        return {"rps": round(self.requests_per_s, 2), "eps": round(self.errors_per_s, 2), "p99_ms": p99}


def _counted(route: str) -> bool:
    return route not in PROBE_ROUTES and not route.startswith(PROBE_PREFIXES) and route != "/"


def parse_counters(text: str) -> NodeCounters:
    counters = NodeCounters()
    for family in text_string_to_metric_families(text):
        if family.name not in (REQUESTS, LATENCY):
            continue
        for sample in family.samples:
            if not _counted(sample.labels.get("route", "")):
                continue
            if sample.name == f"{REQUESTS}_total":
                counters.requests += sample.value
                if sample.labels.get("status", "").startswith("5"):
                    counters.errors += sample.value
            elif sample.name == f"{LATENCY}_bucket":
                le = float(sample.labels["le"])
                counters.buckets[le] = counters.buckets.get(le, 0.0) + sample.value
    return counters


def growth(before: NodeCounters | None, after: NodeCounters) -> NodeCounters:
    """How much each counter grew; everything since 0 if the node is new or restarted in between."""
    if before is None or after.requests < before.requests:
        return after
    return NodeCounters(
        requests=after.requests - before.requests,
        errors=max(0.0, after.errors - before.errors),
        buckets={le: max(0.0, n - before.buckets.get(le, 0.0)) for le, n in after.buckets.items()},
    )


def quantile(buckets: dict[float, float], q: float) -> float | None:
    """The q-quantile of a cumulative histogram, interpolated inside its bucket (as Prometheus does)."""
    edges = sorted(buckets.items())
    total = edges[-1][1] if edges else 0.0
    if total <= 0:
        return None
    rank = q * total
    lower_edge, lower_count = 0.0, 0.0
    for le, count in edges:
        if count >= rank:
            if math.isinf(le):
                return lower_edge  # beyond the last finite bucket: its edge is all we know
            share = (rank - lower_count) / (count - lower_count) if count > lower_count else 1.0
            return lower_edge + (le - lower_edge) * share
        lower_edge, lower_count = le, count
    return lower_edge


def tier_rates(deltas: list[tuple[NodeCounters, float]]) -> TierRates:
    """A tier's rates from each node's growth and the seconds it grew over (nodes are scraped apart:
    one that missed a scrape grew over two intervals)."""
    buckets: dict[float, float] = {}
    for delta, _ in deltas:
        for le, n in delta.buckets.items():
            buckets[le] = buckets.get(le, 0.0) + n
    p99 = quantile(buckets, 0.99)
    return TierRates(
        requests_per_s=sum(d.requests / max(seconds, 1e-6) for d, seconds in deltas),
        errors_per_s=sum(d.errors / max(seconds, 1e-6) for d, seconds in deltas),
        p99_ms=None if p99 is None else p99 * 1000,
    )
