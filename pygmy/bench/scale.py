"""`pygmy bench scale`: the same closed-loop lookups through 1, 2 and 4 frontends, and buys/s with 1, 3
and 5 replicas per group, each on a cluster of its own: what more frontends and replication cost and buy."""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable

from pygmy.bench.loops import Mix, closed_loop, rate_row
from pygmy.bench.prepare import ready_books
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient


async def point(target: Target, mix: Mix, *, concurrency: int, seconds: float, max_requests: int,
                tick: Callable[[], None]) -> dict[str, Any]:
    """One closed-loop point spread over every frontend of `target`."""
    async with contextlib.AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(PygmyClient(url, admin_token=target.admin_token))
                   for url in target.frontends]
        items = await ready_books(clients[0], max_requests if "buy" in mix.weights else 0)
        cpu = time.process_time()
        samples, elapsed = await closed_loop(clients, concurrency, mix, items, seconds=seconds,
                                             max_requests=max_requests, tick=tick)
        cpu = time.process_time() - cpu
    # The share of one core this driver (one Python process) used: near 1.0, the driver is the limit.
    return {**rate_row(samples, elapsed), "driver_cpu": cpu / elapsed if elapsed > 0 else float("nan")}
