"""Many buyers at once: never oversell, never fail messily, and one Idempotency-Key means one order."""

from __future__ import annotations

import asyncio
import collections
from typing import Any

import aiohttp

from support.cluster import Cluster
from support.http import Api


async def _race(url: str, count: int, headers: dict[str, str] | None = None) -> list[tuple[int, Any]]:
    """`count` buys sent together over one session; (status, JSON body) of each."""
    connector = aiohttp.TCPConnector(limit=count)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        start = asyncio.Event()

        async def one() -> tuple[int, Any]:
            await start.wait()
            async with session.post(url, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)

        tasks = [asyncio.create_task(one()) for _ in range(count)]
        await asyncio.sleep(0)
        start.set()
        return await asyncio.gather(*tasks)


async def test_buy_never_oversells_when_200_clients_race_for_50_copies(module_cluster: Cluster, module_api: Api) -> None:
    module_api.set_stock(1, 50)
    orders_before = module_api.order_count()
    results = await _race(f"{module_cluster.frontend_url}/buy/1", 200)
    statuses = collections.Counter(status for status, _ in results)
    assert statuses == {200: 50, 409: 150}, statuses
    for status, body in results:
        if status == 409:
            assert set(body) == {"error"} and body["error"]["code"], body
    order_ids = [body["order_id"] for status, body in results if status == 200]
    assert len(set(order_ids)) == 50, "each success is its own order"
    assert module_api.stock(1) == 0
    orders = module_api.all_orders()
    assert len(orders) == orders_before + 50
    assert {o["order_id"] for o in orders if o["item"] == 1} >= set(order_ids)


async def test_twenty_parallel_buys_with_one_idempotency_key_make_one_order(module_cluster: Cluster, module_api: Api) -> None:
    module_api.set_stock(2, 10)
    orders_before = module_api.order_count()
    results = await _race(f"{module_cluster.frontend_url}/buy/2", 20, {"Idempotency-Key": "one-key-twenty-tries"})
    statuses = collections.Counter(status for status, _ in results)
    assert statuses == {200: 20}, f"every retry of one buy should get its answer: {statuses} {results[:3]}"
    assert len({body["order_id"] for _, body in results}) == 1
    assert module_api.stock(2) == 9
    assert module_api.order_count() == orders_before + 1
