"""Histories of concurrent clients against a live cluster are linearizable against the stock model.

Clients buy, look up and restock two items with small stock, recording when each call started and
returned and what it saw. The checker (`pygmy.checker.linearizability`) then searches for an order
of the operations, consistent with real time, in which a sequential bookstore gives the same
answers. An oversell, a lost update or a stale read makes that impossible. In the crash variant the
order tier is killed mid-run: buys cut off by it have an unknown outcome (they may or may not have
taken effect), which the checker allows for.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from typing import Callable

import aiohttp
import pytest

from pygmy.checker.linearizability import Operation, check, stock_model
from support.cluster import Cluster
from support.stock_ops import choose, perform, record
from support.http import Api

ITEMS = {5: 6, 6: 4}
CLIENTS = 10
OPS_PER_CLIENT = 30


async def _client(session: aiohttp.ClientSession, url: str, admin: str, client: int, seed: int,
                   history: list[Operation]) -> None:
    rng = random.Random(seed)
    for _ in range(OPS_PER_CLIENT):
        op = choose(rng.choice(list(ITEMS)), rng.random(), buy_below=0.55, lookup_below=0.9)
        call = time.monotonic()
        output = await perform(session, url, admin, op)
        record(history, client, op, call, output, time.monotonic())
        await asyncio.sleep(rng.uniform(0, 0.01))


def _run_clients(cluster: Cluster, history: list[Operation]) -> None:
    async def main() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
            await asyncio.gather(*(
                _client(session, cluster.frontend_url, cluster.admin_token, c, 1000 + c, history)
                for c in range(CLIENTS)
            ))

    asyncio.run(main())


def _prepare(cluster: Cluster) -> None:
    api = Api(cluster.frontend_url, cluster.admin_token)
    for item, stock in ITEMS.items():
        api.set_stock(item, stock)


def _assert_linearizable(history: list[Operation]) -> None:
    result = check(history, stock_model(ITEMS), timeout=60)
    assert result.ok is True, result.explanation
    outcomes = {op.output for op in history if op.input[0] == "buy"}
    assert {"ok", "out_of_stock"} <= outcomes, "the run never reached out-of-stock, so it proved little"


def test_concurrent_buys_lookups_and_restocks_are_linearizable(make_cluster: Callable[..., Cluster]) -> None:
    cluster = make_cluster("linearizable")
    _prepare(cluster)
    history: list[Operation] = []
    _run_clients(cluster, history)
    assert len(history) == CLIENTS * OPS_PER_CLIENT
    _assert_linearizable(history)


@pytest.mark.parametrize("group", ["order", "catalog"])
def test_history_stays_linearizable_when_a_group_leader_is_killed_mid_run(make_cluster: Callable[..., Cluster], group: str) -> None:
    cluster = make_cluster(f"linearizable-crash-{group}")
    _prepare(cluster)
    history: list[Operation] = []
    runner = threading.Thread(target=_run_clients, args=(cluster, history))
    runner.start()
    deadline = time.monotonic() + 20
    while len(history) < CLIENTS * OPS_PER_CLIENT // 4 and time.monotonic() < deadline:
        time.sleep(0.005)
    leader, term = cluster.leader(group)
    cluster.kill(group, leader)
    assert cluster.leader(group)[1] > term, "another replica took over"
    time.sleep(0.2)
    cluster.restart(group, leader)
    runner.join(timeout=120)
    assert not runner.is_alive()
    _assert_linearizable(history)


def test_the_checker_rejects_this_suite_s_history_when_an_oversell_is_planted() -> None:
    """The check above can fail: two completed buys of the last copy are not linearizable."""
    history = [
        Operation(0, ("buy", 6), 0.0, "ok", 1.0),
        Operation(1, ("buy", 6), 2.0, "ok", 3.0),
    ]
    assert check(history, stock_model({6: 1})).ok is False
