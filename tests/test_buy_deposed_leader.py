"""A buy whose order leader is deposed after it opened the order is answered `outcome_unknown`: without an
Idempotency-Key it is never run again on the new leader, which would open a second order (and take a
second copy) for one request; with one, when no new leader comes in time, the answer still says the buy may
have happened, never "not carried out".

Real processes, real signals: the catalog leader is stopped (SIGSTOP) so the buy waits on its decrement;
meanwhile the order leader is stopped long enough for its followers to elect another, then resumed, so it
finishes the buy as a deposed leader.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Iterator

import pytest
import requests

from support.cluster import Cluster
from support.http import Api

ITEM = 4


@pytest.fixture
def three(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("deposed"), replicas=3)
    c.start()
    stopped: list[int] = []
    c.stopped = stopped  # type: ignore[attr-defined]
    try:
        yield c
    finally:
        for pid in stopped:
            with_suppress_cont(pid)
        c.stop()


def with_suppress_cont(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGCONT)
    except ProcessLookupError:
        pass


def _pause(c: Cluster, kind: str, node_id: int) -> int:
    pid = c.procs[f"{kind}-{node_id}"].pid
    c.stopped.append(pid)  # type: ignore[attr-defined]
    os.kill(pid, signal.SIGSTOP)
    return pid


def test_a_keyless_buy_whose_leader_is_deposed_after_begin_is_outcome_unknown_and_one_order(three: Cluster) -> None:
    c = three
    api = Api(c.frontend_url, c.admin_token)
    api.set_stock(ITEM, 50)
    api.bought(ITEM)  # the order leader has now seen the item exist (it checks before opening an order)
    orders_before, stock_before = api.order_count(), api.stock(ITEM)
    order_leader, _ = c.leader("order")
    catalog_leader, _ = c.leader("catalog")
    answer: dict[str, requests.Response] = {}

    def buy() -> None:
        # Straight to the order leader, with no key (the frontend always adds one).
        answer["r"] = requests.post(f"{c.url('order', order_leader)}/internal/buy", json={"item": ITEM},
                                    headers=c.secret_headers(), timeout=60)

    catalog_pid = _pause(c, "catalog", catalog_leader)  # the decrement will hang on it, then go elsewhere
    thread = threading.Thread(target=buy)
    thread.start()
    time.sleep(0.7)  # the order is begun and waits on the catalog
    order_pid = _pause(c, "order", order_leader)
    time.sleep(2.0)  # the other order replicas elect a new leader
    os.kill(order_pid, signal.SIGCONT)
    thread.join(60)
    os.kill(catalog_pid, signal.SIGCONT)
    resp = answer["r"]
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "outcome_unknown"
    # Settled by the new leader, one way or the other: at most one order, and copies taken == orders.
    new_orders = _settled_orders(c, api, orders_before)
    assert new_orders <= 1
    assert stock_before - api.stock(ITEM) == new_orders


def _settled_orders(c: Cluster, api: Api, orders_before: int) -> int:
    """New orders once the leader's settler has resolved every pending one."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and requests.get(
            f"{c.order_url}/internal/ledger", headers=c.secret_headers(), timeout=15).json()["pending"]:
        time.sleep(0.5)
    return api.order_count() - orders_before


def test_a_keyed_buy_whose_leader_is_deposed_with_no_successor_is_outcome_unknown_not_unavailable(
    three: Cluster,
) -> None:
    c = three
    api = Api(c.frontend_url, c.admin_token)
    api.set_stock(ITEM, 50)
    api.bought(ITEM)
    orders_before, stock_before = api.order_count(), api.stock(ITEM)
    order_leader, _ = c.leader("order")
    catalog_leader, _ = c.leader("catalog")
    followers = [i for i in range(c.replicas) if i != order_leader]
    answer: dict[str, requests.Response] = {}

    def buy() -> None:
        answer["r"] = requests.post(f"{c.url('order', order_leader)}/internal/buy",
                                    json={"item": ITEM, "idempotency_key": "deposed-keyed"},
                                    headers=c.secret_headers(), timeout=60)

    catalog_pid = _pause(c, "catalog", catalog_leader)  # the decrement hangs on it, then goes elsewhere
    thread = threading.Thread(target=buy)
    thread.start()
    time.sleep(0.7)  # the order is begun (committed by all three) and waits on the catalog
    for follower in followers:
        c.kill("order", follower)  # the leader loses its quorum and steps down; nobody can take over
    thread.join(60)
    os.kill(catalog_pid, signal.SIGCONT)
    resp = answer["r"]
    for follower in followers:
        c.start_node("order", follower, wait=False)
    c.wait_ready([c.node("order", i) for i in followers])
    new_orders = _settled_orders(c, api, orders_before)
    assert stock_before - api.stock(ITEM) == new_orders <= 1
    assert resp.status_code == 503, resp.text
    assert resp.json()["error"]["code"] == "outcome_unknown", (
        f"answered {resp.text} for a buy that opened {new_orders} order(s)")
