"""Per-tier rates from two scrapes of /metrics: counted routes only, restarts never go negative, p99 as
Prometheus computes it."""

from __future__ import annotations

import pytest

from pygmy.web.rates import NodeCounters, growth, parse_counters, quantile, tier_rates


def metrics(lookups: int, errors: int = 0, *, fast: int = 0, slow: int = 0, probes: int = 0) -> str:
    """A /metrics page as a frontend writes it: `fast` answers under 5 ms, `slow` between 50 and 100 ms."""
    lines = [
        "# TYPE pygmy_http_requests_total counter",
        f'pygmy_http_requests_total{{tier="frontend",route="/lookup/{{item}}",method="GET",status="200"}} {lookups}',
        f'pygmy_http_requests_total{{tier="frontend",route="/buy/{{item}}",method="POST",status="503"}} {errors}',
        f'pygmy_http_requests_total{{tier="frontend",route="/health",method="GET",status="200"}} {probes}',
        "# TYPE pygmy_http_request_seconds histogram",
    ]
    for le, count in (("0.005", fast), ("0.05", fast), ("0.1", fast + slow), ("+Inf", fast + slow)):
        lines.append(f'pygmy_http_request_seconds_bucket{{tier="frontend",route="/lookup/{{item}}",le="{le}"}} {count}')
        lines.append(f'pygmy_http_request_seconds_bucket{{tier="frontend",route="/health",le="{le}"}} {probes}')
    return "\n".join(lines) + "\n"


def test_the_dashboards_own_probes_are_not_counted_as_traffic() -> None:
    counters = parse_counters(metrics(10, 2, fast=10, probes=500))
    assert counters.requests == 12
    assert counters.errors == 2  # a 503 is an error; the 200s are not
    assert counters.buckets[float("inf")] == 10


def test_rates_are_growth_per_second_summed_over_a_tiers_nodes() -> None:
    a = growth(parse_counters(metrics(10)), parse_counters(metrics(30, 4)))
    b = growth(parse_counters(metrics(0)), parse_counters(metrics(20)))
    rates = tier_rates([(a, 2.0), (b, 4.0)])  # b missed a scrape: it grew over two intervals
    assert rates.requests_per_s == pytest.approx(24 / 2 + 20 / 4)
    assert rates.errors_per_s == pytest.approx(2)


def test_a_restarted_node_counts_from_zero_not_negative() -> None:
    before, after = parse_counters(metrics(1000, 50)), parse_counters(metrics(7, 1))
    assert growth(before, after).requests == 8
    assert growth(before, after).errors == 1


def test_p99_lies_in_the_bucket_of_the_99th_percent_answer() -> None:
    # 98 fast answers and 2 slow ones: the 99th of 100 is a slow one, between 50 and 100 ms.
    delta = growth(None, parse_counters(metrics(100, fast=98, slow=2)))
    p99 = tier_rates([(delta, 1.0)]).p99_ms
    assert p99 is not None and 50 < p99 <= 100
    assert quantile({0.005: 100, float("inf"): 100}, 0.99) == pytest.approx(0.00495)


def test_no_answers_means_no_p99() -> None:
    assert tier_rates([(NodeCounters(), 1.0)]).p99_ms is None
