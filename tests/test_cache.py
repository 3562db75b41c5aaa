"""The frontend cache: it serves hits, and never a value older than one any client has been able to read.

Two clusters of real processes, each with two frontends:
- `held`: frontend-1 holds every fill for FILL_DELAY_MS between the catalog's answer and storing it (the
  test hook PYGMY_TEST_FILL_DELAY_MS), so an invalidation can be landed inside a fill, deterministically;
  frontend-2 never answers an invalidation (PYGMY_TEST_DEAF_TO_INVALIDATIONS: its channel from the
  catalog is cut, its lease renewals are not), so every write there waits for its lease;
- `plain`: no hooks, for the randomized runs (with and without kill -9 of the catalog leader).
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
import threading
import time
from typing import Any, Iterator

import aiohttp
import pytest
import requests

from pygmy.checker.linearizability import Operation, check, stock_model
from support.cluster import Cluster, running_cluster
from support.http import Api
from support.polling import wait_for
from support.stock_ops import choose, perform, record

LEASE_MS = 1000
DRIFT_MS = 100
FILL_DELAY_MS = 800
CACHE = {"lease_ms": LEASE_MS, "drift_ms": DRIFT_MS}


@pytest.fixture(scope="module")
def held(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    env = {"frontend-1": {"PYGMY_TEST_FILL_DELAY_MS": str(FILL_DELAY_MS)},
           "frontend-2": {"PYGMY_TEST_DEAF_TO_INVALIDATIONS": "1"}}
    with running_cluster(tmp_path_factory.mktemp("cache-held"), frontends=3, cache=CACHE, env=env) as c:
        _wait_for_leases(c)
        yield c


@pytest.fixture(scope="module")
def _plain(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with running_cluster(tmp_path_factory.mktemp("cache-plain"), frontends=2, cache=CACHE) as c:
        yield c


@pytest.fixture
def plain(_plain: Cluster) -> Cluster:
    _plain.ensure_running()
    _wait_for_leases(_plain)
    return _plain


def _api(c: Cluster, frontend: int) -> Api:
    return Api(c.url("frontend", frontend), c.admin_token)


def _wait_for_leases(c: Cluster, timeout: float = 20.0) -> None:
    """Until every frontend holds a catalog lease (a hit proves it: entries are served only under one)."""
    for i in range(c.frontends):
        wait_for(f"frontend-{i} to serve a hit", lambda: _get(c, i, "/lookup/7").headers.get("X-Pygmy-Cache") == "hit",
                 timeout, details=c.logs)


def _until_hit(c: Cluster, frontend: int, path: str, timeout: float = 10.0) -> None:
    """Until the frontend answers `path` from its cache (after a write, a deaf frontend's next lease
    starts empty, so the first fills may be dropped)."""
    wait_for(f"frontend-{frontend} to serve {path} from its cache",
             lambda: _get(c, frontend, path).headers.get("X-Pygmy-Cache") == "hit", timeout)


def _get(c: Cluster, frontend: int, path: str) -> requests.Response:
    return requests.get(c.url("frontend", frontend) + path, timeout=10)


def _metric(url: str, name: str) -> float:
    """The sum of every sample of a metric (all label sets) at a node's /metrics."""
    text = requests.get(url + "/metrics", timeout=5).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and (line[len(name)] in " {"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _catalog_reads(c: Cluster, item: int) -> float:
    """Lookups of any book the catalog replicas served (the route is labelled by template)."""
    total = 0.0
    for i in range(c.replicas):
        text = requests.get(c.url("catalog", i) + "/metrics", timeout=5).text
        for line in text.splitlines():
            if line.startswith("pygmy_http_requests_total{") and 'route="/internal/books/{item}"' in line:
                total += float(line.rsplit(" ", 1)[1])
    return total


# -- hits, misses, negative entries, single flight ------------------------------------------------


def test_a_second_lookup_is_a_hit_and_both_are_counted_in_metrics(held: Cluster) -> None:
    url = held.url("frontend", 0)
    hits, misses = _metric(url, "pygmy_cache_hits_total"), _metric(url, "pygmy_cache_misses_total")
    _api(held, 0).update(1, {"stock_delta": 0})  # drops ("book", 1) everywhere: the next lookup must miss
    first = _get(held, 0, "/lookup/1")
    assert first.headers["X-Pygmy-Cache"] == "miss"
    # The write's `end` goes out after it is acknowledged: until it arrives the key is still pending and a
    # fill is not kept, so under load the second lookup may miss too. Each answer is counted as it says.
    seen = [first]
    while seen[-1].headers["X-Pygmy-Cache"] != "hit" and len(seen) < 50:
        time.sleep(0.05 * (len(seen) > 1))
        seen.append(_get(held, 0, "/lookup/1"))
    assert seen[-1].headers["X-Pygmy-Cache"] == "hit", "the lookup was never cached again"
    assert all(r.json() == first.json() for r in seen)
    assert _metric(url, "pygmy_cache_hits_total") == hits + 1
    assert _metric(url, "pygmy_cache_misses_total") == misses + len(seen) - 1
    assert _metric(url, "pygmy_cache_lease_renewals_total") >= 1


def test_a_buy_invalidates_the_lookup_in_every_frontend(held: Cluster) -> None:
    before = [_metric(held.url("frontend", i), "pygmy_cache_invalidations_total") for i in (0, 1)]
    stock = _get(held, 0, "/lookup/2").json()["stock"]
    assert _get(held, 0, "/lookup/2").headers["X-Pygmy-Cache"] == "hit"
    assert _api(held, 1).buy(2).status_code == 200
    after = _get(held, 0, "/lookup/2")
    assert after.headers["X-Pygmy-Cache"] == "miss" and after.json()["stock"] == stock - 1
    assert [_metric(held.url("frontend", i), "pygmy_cache_invalidations_total") for i in (0, 1)] == [b + 1 for b in before]


def test_searches_are_cached_per_page_and_survive_buys(held: Cluster) -> None:
    _get(held, 0, "/search/ds")
    assert _get(held, 0, "/search/ds").headers["X-Pygmy-Cache"] == "hit"
    assert _get(held, 0, "/search/ds?limit=1").headers["X-Pygmy-Cache"] == "miss"  # another page, another key
    assert _api(held, 0).buy(1).status_code == 200  # a buy changes stock, which no search page holds
    assert _get(held, 0, "/search/ds").headers["X-Pygmy-Cache"] == "hit"


def test_an_unknown_item_is_a_cached_404(held: Cluster) -> None:
    first, second = _get(held, 0, "/lookup/987654"), _get(held, 0, "/lookup/987654")
    assert first.status_code == second.status_code == 404
    assert second.json()["error"]["code"] == "unknown_item"
    assert (first.headers["X-Pygmy-Cache"], second.headers["X-Pygmy-Cache"]) == ("miss", "hit")


def test_concurrent_misses_for_one_key_make_one_catalog_read(held: Cluster) -> None:
    _api(held, 0).update(3, {"stock_delta": 0})  # ("book", 3) is not cached now
    reads = _catalog_reads(held, 3)
    results: list[requests.Response] = []

    def lookup() -> None:
        results.append(_get(held, 1, "/lookup/3"))  # frontend-1 holds the fill, so all 20 overlap it

    threads = [threading.Thread(target=lookup) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert [r.status_code for r in results] == [200] * 20
    assert _catalog_reads(held, 3) == reads + 1


# -- the stale-fill race ------------------------------------------------------------------------


def test_a_fill_that_an_invalidation_overtakes_is_not_stored(held: Cluster) -> None:
    """frontend-1 reads item 4 (stock s) and holds the answer; meanwhile a buy is acknowledged. The held
    fill answers its own request (it was concurrent with the buy) but must not be stored: the next
    lookup through frontend-1 sees s - 1. Storing it would serve s after the buy's acknowledgement."""
    api0 = _api(held, 0)
    api0.update(4, {"stock_delta": 0})
    stock = api0.stock(4)
    box: list[requests.Response] = []
    reader = threading.Thread(target=lambda: box.append(_get(held, 1, "/lookup/4")))
    reader.start()
    time.sleep(FILL_DELAY_MS / 4000)  # the fill has read the catalog and is being held
    assert api0.buy(4).status_code == 200
    reader.join(30)
    assert box[0].json()["stock"] in (stock, stock - 1)
    again = _get(held, 1, "/lookup/4")
    assert again.json()["stock"] == stock - 1, f"frontend-1 stored a fill the buy had invalidated ({again.headers})"


# -- two frontends under random load -------------------------------------------------------------

ITEMS = {5: 5, 6: 4}
CLIENTS = 8
OPS_PER_CLIENT = 30
RUN_SECONDS = 20.0  # the bound on a run's time, whatever the machine's load


async def _client(session: aiohttp.ClientSession, c: Cluster, client: int, rng: random.Random,
                  history: list[Operation], end: float) -> None:
    """Buys, restocks and (mostly) lookups, each through a frontend chosen at random."""
    for _ in range(OPS_PER_CLIENT):
        if time.monotonic() > end:
            return
        op = choose(rng.choice(list(ITEMS)), rng.random(), buy_below=0.3, lookup_below=0.9)
        url = c.url("frontend", rng.randrange(c.frontends))
        call = time.monotonic()
        output = await perform(session, url, c.admin_token, op)
        record(history, client, op, call, output, time.monotonic())
        await asyncio.sleep(rng.uniform(0, 0.02))


def _run(c: Cluster, seed: int, during: Any = None) -> list[Operation]:
    history: list[Operation] = []

    async def main() -> None:
        end = time.monotonic() + RUN_SECONDS
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            clients = [_client(session, c, i, random.Random(seed * 100 + i), history, end) for i in range(CLIENTS)]
            if during is not None:
                clients.append(asyncio.to_thread(during))
            await asyncio.gather(*clients)

    asyncio.run(main())
    return history


def _assert_no_stock_goes_back_up(history: list[Operation]) -> None:
    """Per response: a lookup that began after another lookup of the item returned s sees at most s plus
    the restocks that may have come between (read-your-writes and monotonic reads, across frontends)."""
    done = sorted((op for op in history if op.ret is not None), key=lambda op: op.ret)  # type: ignore[arg-type, return-value]
    for later in (op for op in done if op.input[0] == "lookup"):
        item = later.input[1]
        for earlier in done:
            if earlier.ret >= later.call:  # type: ignore[operator]
                break
            if earlier.input != ("lookup", item):
                continue
            restocks = sum(1 for op in history if op.input[0] == "restock" and op.input[1][0] == item
                           and (op.ret is None or op.ret > earlier.call) and op.call < later.ret)  # type: ignore[operator]
            assert later.output <= earlier.output + restocks, (
                f"client {later.client} saw item {item} at {later.output} after client {earlier.client} had "
                f"seen {earlier.output}, with {restocks} restock(s) between: a stale read")


def _check(history: list[Operation]) -> None:
    _assert_no_stock_goes_back_up(history)
    result = check(history, stock_model(ITEMS), timeout=60)
    assert result.ok is True, result.explanation
    assert any(op.output == "ok" for op in history), "no buy succeeded, so the run proved little"


def _prepare(c: Cluster) -> None:
    for item, stock in ITEMS.items():
        _api(c, 0).set_stock(item, stock)
        for i in range(c.frontends):
            _get(c, i, f"/lookup/{item}")  # both frontends start with the items cached


def test_two_frontends_under_random_buys_restocks_and_lookups_stay_linearizable(plain: Cluster) -> None:
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    _prepare(plain)
    history = _run(plain, seed)
    hits = sum(_metric(plain.url("frontend", i), "pygmy_cache_hits_total") for i in (0, 1))
    _check(history)
    assert hits > 0


def test_two_frontends_stay_linearizable_across_kill_9_of_the_catalog_leader(plain: Cluster) -> None:
    seed = random.randrange(1_000_000)
    print(f"seed {seed}")
    _prepare(plain)
    killed: list[float] = []

    def kill_leader() -> None:
        time.sleep(2.0)
        leader, _ = plain.leader("catalog")
        plain.kill("catalog", leader)
        killed.append(time.monotonic())

    history = _run(plain, seed, kill_leader)
    _check(history)
    # The pause the failover cost writes: from the kill to the first write acknowledged after it.
    after = [op.ret for op in history if op.input[0] != "lookup" and op.ret is not None and op.call > killed[0]]
    first = min(after, default=None)
    if first is not None:
        print(f"writes resumed {first - killed[0]:.2f} s after kill -9 of the catalog leader "
              f"(election + at most one lease of {LEASE_MS} ms + drift {DRIFT_MS} ms)")


# -- a frontend cut off from invalidations -------------------------------------------------------


def _lease_waits(c: Cluster) -> float:
    return sum(_metric(c.url("catalog", i), "pygmy_cache_lease_waits_total") for i in range(c.replicas))


def _timed_buy(c: Cluster, item: int) -> float:
    start = time.monotonic()
    assert _api(c, 0).buy(item).status_code == 200
    took = time.monotonic() - start
    print(f"a buy with frontend-2 deaf to invalidations took {took * 1000:.0f} ms "
          f"(lease {LEASE_MS} ms + drift {DRIFT_MS} ms)")
    # Liveness, not speed: the write waited for that frontend's lease, and not much more.
    assert took < (LEASE_MS + DRIFT_MS) / 1000 + 3.0, "the write waited for longer than the frontend's lease"
    return took


def test_a_frontend_deaf_to_invalidations_delays_writes_by_a_lease_and_drops_its_cache(held: Cluster) -> None:
    """frontend-2 keeps renewing its lease but never hears the invalidation: the buy waits for its lease to
    end, and the leader does not let the renewals it grants meanwhile continue that lease, so frontend-2
    starts again from an empty cache instead of serving the stock from before the buy."""
    _api(held, 0).set_stock(6, 10)
    _until_hit(held, 2, "/lookup/6")
    waits = _lease_waits(held)
    _timed_buy(held, 6)
    after = _get(held, 2, "/lookup/6")
    assert after.json()["stock"] == 9, f"frontend-2 served stale stock after the buy ({after.headers})"
    assert _lease_waits(held) >= waits + 1


def test_a_write_becomes_readable_only_after_every_frontend_dropped_the_old_value(held: Cluster) -> None:
    """While a buy waits for frontend-2 (deaf, item 5 cached), lookups alternate between frontend-0 and
    frontend-2. Once either has shown the new stock, none that starts later may show the old one.
    Invalidating after applying the buy would let frontend-0's miss read the new stock while frontend-2
    still serves the old from its cache, until its next lease renewal (up to a third of a lease): three
    rounds, so that window is all but certainly hit."""
    for _ in range(3):
        stock = _api(held, 0).set_stock(5, 10)["stock"]
        _until_hit(held, 2, "/lookup/5")
        buyer = threading.Thread(target=lambda: _api(held, 0).buy(5))
        buyer.start()
        seen: list[tuple[int, int, str]] = []
        deadline = time.monotonic() + 10
        while (buyer.is_alive() or len(seen) < 4) and time.monotonic() < deadline:
            for frontend in (0, 2):
                r = _get(held, frontend, "/lookup/5")
                seen.append((frontend, r.json()["stock"], r.headers["X-Pygmy-Cache"]))
        buyer.join(30)
        first_new = next(i for i, (_, s, _) in enumerate(seen) if s == stock - 1)
        stale = [(f, s, how) for f, s, how in seen[first_new:] if s != stock - 1]
        assert not stale, f"after the new stock was readable, {stale} still showed the old (frontend, stock, cache): {seen}"


def test_a_stopped_frontend_serves_no_stale_stock_once_resumed(held: Cluster) -> None:
    """SIGSTOP frontend-2 with item 7 cached, buy, SIGCONT, look up at once: its lease ran out while it was
    stopped, so it reads through (it never heard the invalidation) until a new lease empties its cache."""
    _api(held, 0).set_stock(7, 10)
    _until_hit(held, 2, "/lookup/7")
    pid = held.procs["frontend-2"].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        _timed_buy(held, 7)
    finally:
        os.kill(pid, signal.SIGCONT)
    resumed = _get(held, 2, "/lookup/7")
    assert resumed.json()["stock"] == 9, f"frontend-2 served stale stock after it resumed ({resumed.headers})"
