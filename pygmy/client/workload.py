"""The reference's random client: every few seconds a search, lookup or buy; now and then a restock."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Callable

from pygmy.catalog.books import KNOWN_TOPICS
from pygmy.client.api import ApiCallError, PygmyClient

RESTOCK_CHANCE = 0.1
RESTOCK_AMOUNT = 2


async def run_workload(
    client: PygmyClient,
    *,
    duration: float,
    interval: float,
    seed: int | None,
    items: int,
    report: Callable[[str], None],
) -> Counter[str]:
    """Run until `duration` seconds pass; returns counts of each outcome ("buy ok", "lookup error" ...)."""
    rng = random.Random(seed)
    outcomes: Counter[str] = Counter()
    deadline = time.monotonic() + duration
    while time.monotonic() < deadline:
        op = rng.choice(["search", "lookup", "buy"])
        if client.admin_token and rng.random() < RESTOCK_CHANCE:
            op = "restock"
        started = time.perf_counter()
        try:
            line = await _one(client, op, rng, items)
            outcomes[f"{op} ok"] += 1
        except ApiCallError as exc:
            line = f"{op}: {exc.status} {exc.code}: {exc.message}"
            outcomes[f"{op} {exc.code}"] += 1
        report(f"{line}  [{(time.perf_counter() - started) * 1000:.1f} ms]")
        await asyncio.sleep(max(0.0, min(interval * rng.uniform(0.5, 1.5), deadline - time.monotonic())))
    return outcomes


async def _one(client: PygmyClient, op: str, rng: random.Random, items: int) -> str:
    if op == "search":
        topic = rng.choice(list(KNOWN_TOPICS))
        found = (await client.search(topic)).body["items"]
        return f"search {topic}: {len(found)} books"
    item = rng.randint(1, items)
    if op == "lookup":
        book = (await client.lookup(item)).body
        return f"lookup {item}: {book['title']!r}, stock {book['stock']}, cost {book['cost']}"
    if op == "buy":
        order = (await client.buy(item)).body
        return f"buy {item}: order {order['order_id']} for {order['title']!r}"
    book = (await client.update(item, delta=RESTOCK_AMOUNT)).body
    return f"restock {item}: +{RESTOCK_AMOUNT}, stock now {book['stock']}"
