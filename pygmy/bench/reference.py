"""The reference's published numbers (pygmy-lab3-report.txt, section 4), printed beside ours.

Milliseconds, means of 1000 sequential requests, on EdLab machines with the tiers on different hosts
(so its client and frontend times include real network hops; ours run on one machine's loopback).
"""

from __future__ import annotations

# Table 2 (without caching) and Table 3 (with caching): {method: {tier: mean ms}}.
TABLE_2_NO_CACHE: dict[str, dict[str, float]] = {
    "search": {"catalog": 0.974, "frontend": 8.715, "client": 15.91},
    "lookup": {"catalog": 0.929, "frontend": 8.633, "client": 15.78},
    "buy": {"catalog": 15.623, "order": 32.284, "frontend": 41.205, "client": 48.42},
}
TABLE_3_CACHE: dict[str, dict[str, float]] = {
    "search": {"catalog": 0.012, "frontend": 0.531, "client": 8.202},
    "lookup": {"catalog": 0.005, "frontend": 0.6, "client": 7.896},
    "buy": {"catalog": 15.338, "order": 31.505, "frontend": 40.23, "client": 47.408},
}
# Table 4: buys without and with cache invalidation.
TABLE_4_INVALIDATION: dict[str, dict[str, float]] = {
    "without": {"catalog": 9.749, "order": 26.131, "frontend": 35.014, "client": 42.236},
    "with": {"catalog": 11.55, "order": 27.891, "frontend": 36.735, "client": 43.99},
}
# Section 4.3: the request right after an invalidation (a cache miss), client-side.
MISS_AFTER_INVALIDATION: dict[str, float] = {"search": 15.84, "lookup": 15.87, "buy": 48.2}


def published(method: str, cache: bool | None) -> dict[str, float]:
    """The reference's row for `method` with the cache on (True/None: ours ran cache-on) or off."""
    table = TABLE_2_NO_CACHE if cache is False else TABLE_3_CACHE
    return table.get(method, {})
