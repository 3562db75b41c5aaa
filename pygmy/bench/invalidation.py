"""`pygmy bench invalidation`: buys with and without cache invalidation (the reference's Table 4: with the
cache on every buy first has the catalog leader drop the book's entry on every frontend; with it off
there is nothing to invalidate), and the reads right after a buy beside repeated ones.

With and without run on two clusters at once, one with the cache on and one with it off, and their buys
alternate (which cluster goes first swaps every round): both see the same machine at the same moment, so
the difference is the invalidation, not the load other programs put on the machine meanwhile (run one
after the other, the two means moved by more than the invalidation costs). Each round first looks the
book up, so the "with" buy drops a cached entry, as in the reference."""

from __future__ import annotations

import contextlib
from typing import Callable

from pygmy.bench.prepare import ready_books
from pygmy.bench.sampling import Sample, per_tier, timed
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient

# Untimed buys first: a new catalog leader holds its first invalidating write until its predecessor's
# leases have run out (catalog/leases.py), up to a lease and a half, which is start-up, not invalidation.
WARM_UP = 5
# What a buy's invalidation changes: the book's lookup is dropped (the next one is a miss); its search
# results are not (they hold ids and titles, no stock), so the search after a buy is still a hit.
READS = {"lookup": ("lookup, repeated", "lookup after a buy (miss)"),
         "search": ("search, repeated", "search after a buy (still a hit)")}


async def buys(targets: dict[str, Target], n: int, tick: Callable[[], None]) -> dict[str, dict[str, dict[str, float]]]:
    """{label: per-tier figures} of N sequential buys on each target, alternating between them."""
    async with contextlib.AsyncExitStack() as stack:
        clients = {label: await stack.enter_async_context(PygmyClient(t.url, admin_token=t.admin_token))
                   for label, t in targets.items()}
        items = {label: (await ready_books(c, n + WARM_UP))[0] for label, c in clients.items()}
        for _ in range(WARM_UP):
            for label, client in clients.items():
                await timed(client, "buy", items[label])
        found: dict[str, list[Sample]] = {label: [] for label in clients}
        order = list(clients)
        for _ in range(n):
            for label in order:
                await timed(clients[label], "lookup", items[label])  # cached where the cache is on
                found[label].append(await timed(clients[label], "buy", items[label]))
            order.reverse()
            tick()
    return {label: per_tier(samples) for label, samples in found.items()}


async def reads_after_buys(target: Target, n: int, tick: Callable[[], None]) -> dict[str, dict[str, dict[str, float]]]:
    """{read: per-tier figures}: each round reads once to warm the cache, reads again (repeated), buys
    (which invalidates the lookup) and reads once more."""
    found: dict[str, list[Sample]] = {name: [] for pair in READS.values() for name in pair}
    async with PygmyClient(target.url, admin_token=target.admin_token) as client:
        item = (await ready_books(client, 2 * n))[0]
        topic = (await client.lookup(item)).body["topic"]
        for _ in range(n):
            for kind, (repeated, after) in READS.items():
                await timed(client, kind, item, topic)
                found[repeated].append(await timed(client, kind, item, topic))
                await timed(client, "buy", item)
                found[after].append(await timed(client, kind, item, topic))
            tick()
    return {name: per_tier(samples) for name, samples in found.items()}
