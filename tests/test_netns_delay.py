"""Loss and delay between all nodes: everything still holds, only slower.

Every node runs in its own network namespace, and every connection to a node goes through the delay
proxy (`tests/support/netns_faults.py`). A first round of buys runs with no faults; then every hop is
50 ms late each way and every node drops 5% of the packets it receives, and a second round runs. Each
buy carries an idempotency key and the client gives up on an attempt early and asks again with the same
key, so abandoned attempts that did go through are common: each buy must still count once (stock and
order count agree with the buys acknowledged), reads must answer, and `pygmy check` must pass.

A bounded sample runs in `make test`; `make test-netns-loss` (PYGMY_NETNS_LOSS=1) runs the full size.
With -s it prints buy latency (p50/p99) with and without the faults, from the same run.
Needs root (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from typing import Iterator

import pytest
import requests

from support.http import Api
from support.netns import unavailable_reason
from support.netns_faults import DelayedNetnsCluster, drop_at_random, dropped_at_random

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")

FULL = os.environ.get("PYGMY_NETNS_LOSS") == "1"
BUYS = 100 if FULL else 15  # per round
DELAY_MS = 50
LOSS = 0.05
# Raft timing for this network: a round trip is 100 ms before any loss, and a TCP retransmit after a drop
# takes 200 ms or more, so heartbeats every 100 ms and elections after 1-2 s of silence; the defaults
# (30 ms, 150-300 ms) would only measure election storms.
SLOW_RAFT = {"tick_ms": 10, "heartbeat_ticks": 10, "election_ticks": 100}
# Each attempt of a buy is given up after this long (then the next, with the same key). The first is
# shorter than a buy takes under the faults, so attempts that went through are retried on purpose.
ATTEMPT_TIMEOUTS = (0.5, 1.0, 2.0, 4.0, 8.0, 15.0)
ITEM = 3


@pytest.fixture(scope="module")
def delayed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DelayedNetnsCluster]:
    cluster = DelayedNetnsCluster(tmp_path_factory.mktemp("netns-delay"), delay_ms=DELAY_MS, raft=SLOW_RAFT)
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def buy_once(api: Api, item: int, key: str) -> tuple[float, int]:
    """Buy one copy, asking again with the same idempotency key whenever an attempt times out or is
    refused for now (503): (seconds it took in all, attempts)."""
    started = time.monotonic()
    for attempt, timeout in enumerate(ATTEMPT_TIMEOUTS, 1):
        try:
            resp = api.post(f"/buy/{item}", headers={"Idempotency-Key": key}, timeout=timeout)
        except requests.RequestException:
            continue
        if resp.status_code == 200:
            return time.monotonic() - started, attempt
        assert resp.status_code == 503, resp.text
    raise AssertionError(f"buy {key} did not go through in {len(ATTEMPT_TIMEOUTS)} attempts")


def buy_round(api: Api, name: str) -> list[tuple[float, int]]:
    results = []
    for i in range(BUYS):
        results.append(buy_once(api, ITEM, f"{name}-{i}"))
        assert api.lookup(ITEM)["id"] == ITEM and api.search("ds")["items"]  # reads answer throughout
    return results


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def report(name: str, results: list[tuple[float, int]]) -> dict[str, float]:
    took = [t for t, _ in results]
    figures = {"p50": percentile(took, 0.5) * 1000, "p99": percentile(took, 0.99) * 1000,
               "retried": sum(1 for _, attempts in results if attempts > 1)}
    print(f"{name}: {len(took)} buys, p50 {figures['p50']:.0f} ms, p99 {figures['p99']:.0f} ms, "
          f"mean {statistics.mean(took) * 1000:.0f} ms, {figures['retried']:.0f} asked again after an attempt gave up")
    return figures


def pygmy_check(cluster: DelayedNetnsCluster) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pygmy", "check", "--config", str(cluster.config_path)],
                          capture_output=True, text=True, timeout=180)


def test_with_delay_and_random_loss_between_all_nodes_every_buy_counts_once(delayed: DelayedNetnsCluster) -> None:
    api = Api(delayed.frontend_url, delayed.admin_token)
    api.set_stock(ITEM, 2 * BUYS + 100)
    stock_before, orders_before = api.stock(ITEM), api.order_count()
    clean = buy_round(api, "clean")
    names = [n.name for n in delayed.nodes]
    delayed.set_delay(True)
    drop_at_random(delayed.network, names, LOSS)
    try:
        faulty = buy_round(api, "faulty")
        # Every buy counted once, read while the faults still hold.
        assert api.stock(ITEM) == stock_before - 2 * BUYS, "a buy was lost or counted twice"
        assert api.order_count() == orders_before + 2 * BUYS, "a buy was lost or counted twice"
        dropped = dropped_at_random(delayed.network, names)
    finally:
        for name in names:
            delayed.network.heal(name)
    # With the delay still on (loss healed): the replicas agree, checked the way an operator would.
    result = pygmy_check(delayed)
    assert result.returncode == 0, result.stdout + result.stderr
    print()
    base = report("no faults", clean)
    slow = report(f"{DELAY_MS} ms each way + {LOSS:.0%} loss", faulty)
    print(f"{dropped} packets dropped at random meanwhile")
    print(f"with the faults: p50 x{slow['p50'] / base['p50']:.1f}, p99 x{slow['p99'] / base['p99']:.1f}")
