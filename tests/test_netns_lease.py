"""A frontend cut from the catalog's invalidation channel: writes wait one lease, never for ever, and the
frontend never serves stock older than an acknowledged write.

The invalidation channel is the connections the catalog leader opens to the frontend's port to send
`begin`/`end` (docs/design.md, "Invalidation, before the write"). The lease travels the other way: the
frontend renews it with requests it sends to the catalog (`POST /internal/lease`), and so do its reads
and writes. The cut (`cut_invalidations`, iptables in the frontend's namespace) drops only the first:
packets from a catalog replica to the frontend's port, and back from that port. So the frontend keeps
renewing while it hears no invalidation. The design says what must happen then: the leader waits for
that frontend's lease to end instead of its ack, grants it no renewal past that end meanwhile (so its
lease ends before the write is proposed, and the next one starts from an empty cache), and the write
goes on. Needs root (CI runs as root); skipped with the reason otherwise.
"""

from __future__ import annotations

import threading
import time
from typing import Iterator

import pytest
import requests

from support.http import Api
from support.polling import wait_for
from support.netns import NetnsCluster, unavailable_reason
from support.netns_faults import cut_invalidations

REASON = unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")

LEASE_MS = 2000
# A wide drift margin, so the time between the frontend's lease ending and the write going on (at least
# the drift) is long enough for the lookups below to see it.
DRIFT_MS = 400
WRITTEN = 4  # the book the buys change
OTHER = 5  # a book nothing writes: only the lease decides whether it is served from the cache
FRONTEND = "frontend-0"


@pytest.fixture(scope="module")
def leased(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsCluster]:
    cluster = NetnsCluster(tmp_path_factory.mktemp("netns-lease"), cache={"lease_ms": LEASE_MS, "drift_ms": DRIFT_MS})
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


def lookup(cluster: NetnsCluster, item: int) -> tuple[int, str]:
    """(stock, "hit" or "miss") of one lookup at the frontend."""
    resp = requests.get(f"{cluster.frontend_url}/lookup/{item}", timeout=15)
    assert resp.status_code == 200, resp.text
    return resp.json()["stock"], resp.headers["X-Pygmy-Cache"]


def until_hit(cluster: NetnsCluster, item: int, timeout: float = 20.0) -> None:
    wait_for(f"the frontend to serve book {item} from its cache", lambda: lookup(cluster, item)[1] == "hit",
             timeout, 0.05)


def lease_waits(cluster: NetnsCluster) -> float:
    """Writes that waited for a frontend's lease instead of its ack, summed over the catalog replicas."""
    total = 0.0
    for i in range(cluster.replicas):
        for line in requests.get(cluster.url("catalog", i) + "/metrics", timeout=5).text.splitlines():
            if line.startswith("pygmy_cache_lease_waits_total"):
                total += float(line.rsplit(" ", 1)[1])
    return total


class Lookups:
    """Lookups of both books, one after another, while a buy runs and a while after it was acknowledged:
    (book, started, stock, hit or miss) each."""

    def __init__(self, cluster: NetnsCluster) -> None:
        self.cluster = cluster
        self.seen: list[tuple[int, float, int, str]] = []

    def during(self, buy: threading.Thread, after: float) -> None:
        done_at: float | None = None
        deadline = time.monotonic() + 30  # bounded even if the buy hangs
        while time.monotonic() < deadline:
            if done_at is None and not buy.is_alive():
                done_at = time.monotonic()
            if done_at is not None and time.monotonic() > done_at + after:
                return
            for item in (WRITTEN, OTHER):
                started = time.monotonic()
                self.seen.append((item, started, *lookup(self.cluster, item)))


def timed_buy(api: Api, acked: list[float]) -> threading.Thread:
    def buy() -> None:
        api.bought(WRITTEN)
        acked.append(time.monotonic())

    thread = threading.Thread(target=buy)
    thread.start()
    return thread


def test_a_frontend_cut_from_invalidations_delays_writes_by_one_lease_and_serves_no_old_stock(leased: NetnsCluster) -> None:
    api = Api(leased.frontend_url, leased.admin_token)
    stock = api.set_stock(WRITTEN, 50)["stock"]
    waits = lease_waits(leased)
    cut_invalidations(leased, FRONTEND)
    try:
        for round_ in range(2):  # the second write: the frontend's next lease (taken during the cut) too
            until_hit(leased, WRITTEN)  # the old stock is in the cache
            until_hit(leased, OTHER)
            acked: list[float] = []
            started = time.monotonic()
            buyer = timed_buy(api, acked)
            lookups = Lookups(leased)
            lookups.during(buyer, after=1.0)
            buyer.join(30)
            assert acked, "the buy never finished"
            took = acked[0] - started
            new = stock - 1
            # Never the old stock once the write was acknowledged, from the cache or not.
            stale = [(t - acked[0], s, how) for item, t, s, how in lookups.seen if item == WRITTEN and t > acked[0] and s != new]
            assert not stale, (f"after the buy was acknowledged the frontend answered the old stock {len(stale)} times, "
                               f"first {stale[:5]} (s after, stock, cache)")
            # The frontend stopped serving from its cache when its lease ended, before the write went on:
            # a book nothing wrote was a miss.
            lapsed = [t for item, t, _, how in lookups.seen if item == OTHER and how == "miss" and t < acked[0]]
            assert lapsed, f"the frontend served book {OTHER} from its cache all through the write's wait"
            print(f"\nround {round_ + 1}: the buy was acknowledged {took * 1000:.0f} ms after it was sent "
                  f"(lease {LEASE_MS} ms + drift {DRIFT_MS} ms); cached answers stopped "
                  f"{(acked[0] - lapsed[0]) * 1000:.0f} ms before that")
            # Liveness, not speed: writes wait for the lease, not for ever.
            assert took < (LEASE_MS + DRIFT_MS) / 1000 + 5.0
            stock = new
        # Each write waited for the lease because no ack came: the cut did cut the channel.
        assert lease_waits(leased) >= waits + 2
    finally:
        leased.network.heal(FRONTEND)


def test_after_the_heal_invalidations_arrive_and_caching_resumes(leased: NetnsCluster) -> None:
    api = Api(leased.frontend_url, leased.admin_token)
    until_hit(leased, WRITTEN)
    cut_invalidations(leased, FRONTEND)
    try:
        api.bought(WRITTEN)  # waits for the lease
    finally:
        leased.network.heal(FRONTEND)
    stock = lookup(leased, WRITTEN)[0]
    api.bought(WRITTEN)  # the first after the heal may still find a connection the cut broke
    until_hit(leased, WRITTEN)
    waits = lease_waits(leased)
    started = time.monotonic()
    api.bought(WRITTEN)
    took = time.monotonic() - started
    print(f"\nafter the heal a buy took {took * 1000:.0f} ms")
    assert lease_waits(leased) == waits, "the write still waited for the lease: the invalidation was not acknowledged"
    assert lookup(leased, WRITTEN) == (stock - 2, "miss")  # the invalidation dropped the entry
    until_hit(leased, WRITTEN)
    assert lookup(leased, WRITTEN) == (stock - 2, "hit")
