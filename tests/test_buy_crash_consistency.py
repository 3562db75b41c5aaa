"""Crashes in the middle of buys: whatever is killed, every copy taken belongs to exactly one order.

Buyers race against a small stock while the leader of the order or catalog group is killed with SIGKILL;
the group elects another, the frontend and the order tier fail over to it, and the new order leader's
settler resolves the buys that were cut off. The invariant checked is the
one the buy path exists for: copies gone from the catalog == orders in the log, per item, and a
retried Idempotency-Key never yields a second order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import Counter
from typing import Callable

import aiohttp
import pytest

from support.cluster import Cluster
from support.http import Api

ITEM = 4
STOCK = 120
BUYERS = 16
SETTLE_DEADLINE = 20.0


async def _buy_loop(url: str, keys: list[str], stop: threading.Event, outcomes: Counter[int]) -> None:
    """Buyers each work through their share of keys. Careful buyers (even ones) send the key and retry
    until 200 or 409; careless ones send no key and never retry, so only the settler can finish what
    a crash cut off for them."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:

        async def buyer(my_keys: list[str], careful: bool) -> None:
            for key in my_keys:
                headers = {"Idempotency-Key": key} if careful else {}
                deadline = time.monotonic() + 30
                while not stop.is_set() and time.monotonic() < deadline:
                    try:
                        async with session.post(f"{url}/buy/{ITEM}", headers=headers) as r:
                            await r.read()
                            outcomes[r.status] += 1
                            if r.status in (200, 409) or not careful:
                                break
                    except (aiohttp.ClientError, asyncio.TimeoutError):
                        outcomes[0] += 1
                        if not careful:
                            break
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(buyer(keys[i::BUYERS], careful=i % 2 == 0) for i in range(BUYERS)))


def _orders_for(api: Api, item: int) -> list[dict]:
    return [o for o in api.all_orders() if o["item"] == item]


def _wait_until_settled(api: Api) -> tuple[int, int]:
    """Wait (bounded) for stock taken and orders logged to agree; returns (copies taken, orders)."""
    deadline = time.monotonic() + SETTLE_DEADLINE
    while True:
        taken, orders = STOCK - api.stock(ITEM), len(_orders_for(api, ITEM))
        if taken == orders or time.monotonic() > deadline:
            return taken, orders
        time.sleep(0.2)


def _race_with_crashes(cluster: Cluster, victim: str, at_sales: list[int]) -> tuple[Api, Counter[int], list[str], list[int]]:
    api = Api(cluster.frontend_url, cluster.admin_token)
    api.set_stock(ITEM, STOCK)
    keys = [f"crash-{victim}-{i}" for i in range(STOCK + 40)]  # more buyers than copies
    stop, outcomes = threading.Event(), Counter[int]()
    runner = threading.Thread(target=lambda: asyncio.run(_buy_loop(cluster.frontend_url, keys, stop, outcomes)))
    runner.start()
    terms = [cluster.leader(victim)[1]]
    try:
        for sales in at_sales:
            deadline = time.monotonic() + 30
            while outcomes[200] < sales and runner.is_alive() and time.monotonic() < deadline:
                time.sleep(0.002)
            leader, _ = cluster.leader(victim)
            cluster.kill(victim, leader)
            terms.append(cluster.leader(victim)[1])  # another replica took over ...
            time.sleep(0.3)
            cluster.restart(victim, leader)  # ... and the old leader comes back as a follower
        runner.join(timeout=90)
    finally:
        stop.set()
        runner.join(timeout=15)
    return api, outcomes, keys, terms


@pytest.mark.parametrize("victim", ["order", "catalog"])
def test_every_copy_taken_belongs_to_exactly_one_order_when_a_tier_is_killed_mid_buy(
    make_cluster: Callable[..., Cluster], victim: str
) -> None:
    cluster = make_cluster(f"crash-{victim}")
    api, outcomes, keys, terms = _race_with_crashes(cluster, victim, at_sales=[STOCK // 5, STOCK // 2])

    taken, orders = _wait_until_settled(api)
    assert taken == orders, f"{taken} copies left the catalog but {orders} orders exist ({outcomes})"
    # Each kill really hit the leader while buys went on, or this test proved nothing.
    assert terms[0] < terms[1] < terms[2], f"the leader did not change at each kill: terms {terms}"
    assert outcomes[200] > STOCK // 2, outcomes
    # Replaying every careful buyer's key answers from the log and never creates a second order.
    careful_keys = [k for i, k in enumerate(keys) if (i % BUYERS) % 2 == 0]
    replays = Counter(api.buy(ITEM, key).status_code for key in careful_keys)
    assert set(replays) <= {200, 409}, replays
    assert len(_orders_for(api, ITEM)) == orders, "a replayed key created a second order"
    assert STOCK - api.stock(ITEM) == orders
