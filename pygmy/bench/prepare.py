"""What every experiment does before it measures: find the books and restock, through the admin route,
enough copies for every buy it may send (so it never stops on "out of stock" and the books still balance)."""

from __future__ import annotations

from pygmy.client.api import PygmyClient
from pygmy.cluster.load import books, restock


async def ready_books(client: PygmyClient, buys: int) -> list[int]:
    """The book ids to use, each restocked to cover `buys` buys (0: no restock)."""
    items = await books(client)
    if buys > 0:
        await restock(client, items, buys)
    return items
