"""Balancing and failures through the frontend, on real clusters with kill -9.

- kill -9 of any one replica (catalog or order, leader or follower) during a lookup, search, order listing
  and buy load: no read fails; a buy succeeds, or (only when the victim led its group, so an election runs)
  answers 503 with Retry-After; no buy opens two orders, and every copy sold has its order.
- The frontend sees the victim come back as restarted (its boot id changed), in /health's frontend rows.
- 500 concurrent /health calls during load all report every live node up, and cost the replicas nothing
  beyond the heartbeats (no fan-out per call).
- A refused connection marks a replica down at once: the next requests do not try it.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from support.cluster import Cluster
from support.http import Api, assert_error, ok_json
from support.invariants import check_store, leader_of, order_ledger, wait_nothing_pending
from support.load import Load, Outcome
from support.polling import wait_for

ELECTION_WAIT = 4.0  # the frontend's default election_wait_ms, in seconds
KILL_AFTER = 1.5  # seconds into the load
LOAD_SECONDS = 5.0
ITEM = 1


def _victim(cluster: Cluster, kind: str, role: str) -> int:
    leader = leader_of(cluster, kind)
    return leader if role == "leader" else next(i for i in range(cluster.replicas) if i != leader)


def _health(cluster: Cluster) -> dict[str, Any]:
    return ok_json(requests.get(cluster.frontend_url + "/health", timeout=10))


def _frontend_row(cluster: Cluster, name: str) -> dict[str, Any]:
    return next(r for r in _health(cluster)["frontend"]["replicas"] if r["name"] == name)


def _done(cluster: Cluster) -> int:
    return int(order_ledger(cluster)["done_by_item"].get(ITEM, 0))


@pytest.mark.parametrize("kind, role", [("catalog", "leader"), ("catalog", "follower"), ("order", "leader"), ("order", "follower")])
def test_kill_9_of_one_replica_during_load_gives_no_read_error_and_no_duplicate_order(
    module_cluster: Cluster, module_api: Api, kind: str, role: str
) -> None:
    module_api.set_stock(ITEM, 5000)
    victim = _victim(module_cluster, kind, role)
    done_before = _done(module_cluster)
    load = Load(module_cluster.frontend_url, readers=3, buyers=4, seconds=LOAD_SECONDS, item=ITEM).start()
    time.sleep(KILL_AFTER)
    module_cluster.kill(kind, victim)
    killed_at = time.monotonic()
    outcomes = load.join()
    module_cluster.restart(kind, victim)

    reads = [o for o in outcomes if o.kind != "buy"]
    buys = [o for o in outcomes if o.kind == "buy"]
    assert len(reads) > 50 and len(buys) > 10, f"too little load to mean anything: {len(reads)} reads, {len(buys)} buys"
    assert [o for o in reads if o.status != 200] == [], "a read failed while a replica of each tier could serve it"
    _check_buys(buys, election=role == "leader", killed_at=killed_at)

    ok = [o for o in buys if o.status == 200]
    assert len({o.order_id for o in ok}) == len(ok), "two acknowledged buys got the same order"
    check_store(module_cluster)  # every copy sold has a done order, and the replicas agree
    opened = _done(module_cluster) - done_before
    assert len(ok) <= opened <= len(buys), (
        f"{len(ok)} buys acknowledged and {len(buys) - len(ok)} refused, but {opened} orders were opened: "
        f"a retried buy opened a second order"
    )
    name = f"{kind}-{victim}"
    wait_for(f"the frontend to see {name} restarted",
             lambda: (row := _frontend_row(module_cluster, name))["status"] == "up" and row["restarted"])


def _check_buys(buys: list[Outcome], *, election: bool, killed_at: float) -> None:
    """Buys succeed, or answer 503 with Retry-After, and only while an election runs (the victim led)."""
    failed = [o for o in buys if o.status != 200]
    for o in failed:
        assert o.status == 503 and o.retry_after, f"a buy failed with {o}: only a 503 with Retry-After may"
    if not election:
        assert failed == [], f"no election ran (a follower died), yet buys failed: {failed[:5]}"
    for o in failed:
        assert killed_at - 1.0 <= o.started <= killed_at + ELECTION_WAIT + 1.0, f"a buy failed far from the election: {o}"


# -- health ------------------------------------------------------------------------------------------


def _status_calls(cluster: Cluster) -> float:
    """How many /internal/status requests the backend replicas have answered, from their /metrics."""
    total = 0.0
    for kind in ("catalog", "order"):
        for i in range(cluster.replicas):
            text = requests.get(cluster.url(kind, i) + "/metrics", timeout=10).text
            for family in text_string_to_metric_families(text):
                for sample in family.samples:
                    if sample.name == "pygmy_http_requests_total" and sample.labels.get("route") == "/internal/status":
                        total += sample.value
    return total


async def _many_health(url: str, count: int) -> list[tuple[int, dict[str, Any]]]:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0), timeout=timeout) as session:
        async def one() -> tuple[int, dict[str, Any]]:
            async with session.get(url + "/health") as resp:
                return resp.status, await resp.json()

        return await asyncio.gather(*(one() for _ in range(count)))


def test_500_concurrent_health_calls_during_load_all_report_every_node_up_without_asking_the_replicas(
    module_cluster: Cluster,
) -> None:
    wait_for("every node to be up", lambda: _health(module_cluster)["status"] == "ok")
    load = Load(module_cluster.frontend_url, readers=4, buyers=1, seconds=30).start()
    try:
        time.sleep(0.5)
        before = _status_calls(module_cluster)
        started = time.monotonic()
        answers = asyncio.run(_many_health(module_cluster.frontend_url, 500))
        elapsed = time.monotonic() - started
        after = _status_calls(module_cluster)
    finally:
        load.stop()
    for status, doc in answers:
        assert status == 200
        down = [n["name"] for n in doc["nodes"] if n["status"] != "up"]
        assert doc["status"] == "ok" and down == [], f"/health under load reported live nodes down: {down}"
    # The heartbeats alone: one per replica per interval (0.5 s), plus the ones in flight at either end.
    heartbeats = 6 * (elapsed / 0.5 + 2)
    assert after - before <= heartbeats, (
        f"{after - before:.0f} status calls reached the replicas during 500 /health calls in {elapsed:.2f} s; "
        f"the heartbeats account for {heartbeats:.0f}: /health must not ask the replicas"
    )


def _attempts(cluster: Cluster, url: str, outcome: str) -> float:
    text = requests.get(cluster.frontend_url + "/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "pygmy_replica_attempts_total" and sample.labels == {"replica": url, "outcome": outcome}:
                return sample.value
    return 0.0


def test_a_refused_connection_marks_the_replica_down_at_once_and_the_next_requests_skip_it(make_cluster: Any) -> None:
    # Heartbeats a minute apart: whatever marks the victim down within the test, it is not a heartbeat.
    # The cache off: every lookup reaches a replica, so the rotation is what the test watches.
    cluster = make_cluster("slow-heartbeats", frontend={"heartbeat_ms": 60_000}, cache={"enabled": False})
    api = Api(cluster.frontend_url, cluster.admin_token)
    wait_for("every node to be up", lambda: _health(cluster)["status"] == "ok")
    victim = _victim(cluster, "catalog", "follower")
    victim_url = cluster.url("catalog", victim)
    for _ in range(2 * cluster.replicas):
        assert api.lookup(1)["id"] == 1
    assert _attempts(cluster, victim_url, "answered") > 0, "reads go round-robin, to followers too"
    cluster.kill("catalog", victim)
    for _ in range(cluster.replicas):  # one round of the rotation reaches the victim: refused, sent on
        assert api.lookup(1)["id"] == 1
    assert _attempts(cluster, victim_url, "refused") == 1
    row = next(n for n in _health(cluster)["nodes"] if n["url"] == victim_url)
    assert row["status"] == "down", "a refused connection must mark the replica down without waiting for a heartbeat"
    for _ in range(30):
        assert api.lookup(1)["id"] == 1
    assert _attempts(cluster, victim_url, "refused") == 1, "a replica marked down was sent requests again"


# -- deadlines -----------------------------------------------------------------------------------------


def _timed(method: str, url: str, **kwargs: Any) -> tuple[requests.Response, float]:
    started = time.monotonic()
    resp = requests.request(method, url, timeout=30, **kwargs)
    return resp, time.monotonic() - started


def test_a_deadline_is_passed_on_so_no_tier_waits_for_a_leader_longer_than_its_caller(module_cluster: Cluster) -> None:
    # A leaderless order group: one replica left of three. Without a deadline a replica waits 3 s for a
    # leader and the frontend 4 s; with one, each gives up when its caller would.
    survivor = 0
    for i in range(1, module_cluster.replicas):
        module_cluster.kill("order", i)
    wait_for("order-0 to lose its leader", lambda: (module_cluster.status("order", survivor) or {}).get("leader") is None)
    try:
        direct, direct_took = _timed("GET", module_cluster.url("order", survivor) + "/internal/orders",
                                     headers={**module_cluster.secret_headers(), "X-Pygmy-Deadline-Ms": "300"})
        assert direct.status_code == 503 and direct_took < 2.0, (direct.status_code, direct_took)
        buy, buy_took = _timed("POST", module_cluster.frontend_url + f"/buy/{ITEM}", headers={"X-Pygmy-Deadline-Ms": "500"})
        assert buy.status_code == 503 and buy.headers.get("Retry-After"), buy.text
        assert buy_took < 2.5, f"the buy took {buy_took:.2f} s against a deadline of 0.5 s"
    finally:
        for i in range(1, module_cluster.replicas):
            module_cluster.restart("order", i)


def test_the_order_leader_passes_what_is_left_of_its_caller_s_deadline_on_to_the_catalog(module_cluster: Cluster) -> None:
    # A leaderless catalog group: one follower left of three. The order leader's own call to the catalog
    # would retry for 6 s; with its caller's 0.5 s passed on, it gives up (outcome_unknown) while the caller
    # still listens. The caller here is the frontend's hop, made by hand so nothing stops listening early.
    order_leader = leader_of(module_cluster, "order")
    buy_at = module_cluster.url("order", order_leader) + "/internal/buy"
    headers = module_cluster.secret_headers()
    # Once bought, the item is known to the order leader: the buy goes straight to the catalog's decrement.
    assert requests.post(buy_at, json={"item": ITEM}, headers=headers, timeout=30).status_code == 200
    catalog_leader = leader_of(module_cluster, "catalog")
    gone = [catalog_leader, next(i for i in range(module_cluster.replicas) if i != catalog_leader)]
    survivor = next(i for i in range(module_cluster.replicas) if i not in gone)
    for i in gone:
        module_cluster.kill("catalog", i)
    wait_for(f"catalog-{survivor} to lose its leader",
             lambda: (module_cluster.status("catalog", survivor) or {}).get("leader") is None)
    try:
        buy, took = _timed("POST", buy_at, json={"item": ITEM}, headers={**headers, "X-Pygmy-Deadline-Ms": "500"})
        assert buy.status_code == 503, buy.text
        assert took < 3.0, f"the order leader took {took:.2f} s against its caller's deadline of 0.5 s"
    finally:
        for i in gone:
            module_cluster.restart("catalog", i)
        wait_nothing_pending(module_cluster, timeout=30)  # the settler resolves the buy left pending


@pytest.mark.parametrize("value", ["soon", "-5", "0", "1.5", ""])
def test_a_malformed_client_deadline_is_a_400_even_when_the_cache_holds_the_answer(module_api: Api, value: str) -> None:
    for path in ("/lookup/1", "/search/ds"):
        wait_for(f"{path} to be cached", lambda: module_api.get(path).headers.get("X-Pygmy-Cache") == "hit")
        assert_error(module_api.get(path, headers={"X-Pygmy-Deadline-Ms": value}), 400, "bad_deadline")
