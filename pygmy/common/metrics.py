"""Prometheus metrics every node exposes at /metrics: requests by route and status, and latency."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest

from pygmy.common.errors import Handler

REQUESTS = Counter("pygmy_http_requests_total", "HTTP requests answered", ["tier", "route", "method", "status"])
LATENCY = Histogram(
    "pygmy_http_request_seconds",
    "Time from receiving a request to sending the reply",
    ["tier", "route", "status"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)

COMMANDS = Counter(
    "pygmy_state_machine_commands_total", "Commands applied by a tier's state machine", ["tier", "op", "outcome"]
)
# Each attempt a GroupClient makes on one replica: answered, refused (nothing listens) or failed (reset or
# timed out). A replica marked down gets no attempts while a healthy one can answer.
ATTEMPTS = Counter("pygmy_replica_attempts_total", "Requests sent to one replica of a group, by outcome",
                   ["replica", "outcome"])
ORDERS = Counter("pygmy_orders_total", "Buys settled by the order tier", ["status"])


def metrics_middleware(tier: str):  # type: ignore[no-untyped-def]
    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        start = time.perf_counter()
        response = await handler(request)
        # Label by route template, not raw path, so /lookup/1 and /lookup/2 share a series.
        info = request.match_info.route.resource
        route = info.canonical if info is not None else "unmatched"
        REQUESTS.labels(tier, route, request.method, str(response.status)).inc()
        LATENCY.labels(tier, route, str(response.status)).observe(time.perf_counter() - start)
        return response

    return middleware


async def metrics_handler(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})

# The frontend cache and its leases (docs/design.md, "The frontend cache").
CACHE_HITS = Counter("pygmy_cache_hits_total", "Lookups and searches the frontend answered from its cache")
CACHE_MISSES = Counter("pygmy_cache_misses_total", "Lookups and searches the frontend read through to the catalog")
CACHE_INVALIDATIONS = Counter("pygmy_cache_invalidations_total", "Cache keys dropped because a write on them began")
CACHE_EVICTIONS = Counter("pygmy_cache_evictions_total", "Cache entries pushed out by the size bound")
LEASE_RENEWALS = Counter("pygmy_cache_lease_renewals_total", "Catalog leases the frontend took or renewed")
LEASE_WAITS = Counter(
    "pygmy_cache_lease_waits_total", "Catalog writes that waited for a frontend's lease to run out (no ack came)"
)
