"""The buy path: open an order, take a copy at the catalog, record the outcome — and finish what a crash left.

Invariant: every copy the catalog gave out belongs to exactly one `done` order. It holds because
1. the order is durably `pending` before the catalog is asked;
2. the catalog applies each attempt's request id at most once and remembers the result;
3. a pending order nobody is working on (after a crash or a timeout) is settled by asking the catalog
   to `resolve` its request id: the stored result if the decrement happened, else the id is marked
   aborted so a delayed decrement can never apply afterwards.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from pygmy.common.errors import ApiError, not_found, unavailable
from pygmy.common.metrics import ORDERS
from pygmy.common.tier_client import Reply, TierClient, TierUnavailable
from pygmy.order.state_machine import OrderStateMachine, order_from_state
from pygmy.order.store import Order

log = logging.getLogger(__name__)

SETTLE_INTERVAL = 1.0  # seconds between sweeps for orphaned pending orders


class BuyService:
    def __init__(self, machine: OrderStateMachine, tiers: TierClient, catalog_url: str) -> None:
        self.machine = machine
        self.tiers = tiers
        self.catalog_url = catalog_url
        # Orders this process is driving right now; a concurrent retry with the same key joins in.
        self._in_flight: dict[int, asyncio.Task[tuple[Order, list[str]]]] = {}

    async def buy(self, item: int, key: str | None) -> tuple[Order, list[str]]:
        """The settled order and the catalog's Server-Timing entries; ApiError for 404/409/503."""
        result = self.machine.apply({"op": "begin", "item": item, "time": _now(), "idempotency_key": key})
        if result.get("error") == "key_reused":
            raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used to buy another item")
        order = order_from_state(result["order"])
        if order.status == "pending":
            task = self._in_flight.get(order.order_id)
            if task is None:
                task = asyncio.ensure_future(self._take_copy(order, fresh=result["created"]))
                self._in_flight[order.order_id] = task
                task.add_done_callback(lambda _: self._in_flight.pop(order.order_id, None))
            # Shielded: a client that hangs up must not cancel the buy half-way.
            order, timings = await asyncio.shield(task)
        else:
            timings = []
        return _outcome(order), timings

    async def _take_copy(self, order: Order, *, fresh: bool) -> tuple[Order, list[str]]:
        """Ask the catalog for a copy under this attempt's request id. `fresh`: this attempt has never
        been sent before (so a failure to connect proves the catalog never saw it)."""
        try:
            reply = await self._catalog({"op": "decrement", "item": order.item, "request_id": order.request_id})
        except TierUnavailable as exc:
            # The copy may or may not be taken: leave the order pending for the settler to resolve.
            if fresh and not exc.sent:
                # This attempt never reached the catalog: settle it as not taken, so the answer is definite.
                self._settle(order, {"ok": False, "error": "aborted"})
                raise unavailable("the catalog tier cannot be reached; retry shortly") from None
            log.warning("order %d: catalog went silent (%s); left pending", order.order_id, exc)
            raise unavailable(
                "the catalog tier went silent; the buy may or may not have happened; "
                "retry with the same Idempotency-Key to find out",
                code="outcome_unknown",
            ) from None
        timings = [reply.server_timing] if reply.server_timing else []
        return self._settle(order, reply.body), timings

    def _settle(self, order: Order, result: dict[str, Any]) -> Order:
        book = result.get("book") or {}
        if result.get("ok"):
            status = "done"
        else:
            status = {"out_of_stock": "out_of_stock", "not_found": "unknown_item"}.get(result.get("error", ""), "aborted")
        settled = self.machine.apply({
            "op": "settle", "order_id": order.order_id, "attempt": order.attempt, "status": status,
            "title": book.get("title"), "cost": book.get("cost"),
        })
        final = order_from_state(settled["order"])
        if settled.get("changed"):
            ORDERS.labels(final.status).inc()
            log.info("order %d: item %d %s (attempt %d)", final.order_id, final.item, final.status, final.attempt)
        return final

    async def _catalog(self, command: dict[str, Any]) -> Reply:
        reply = await self.tiers.call("POST", f"{self.catalog_url}/internal/apply", json=command)
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise TierUnavailable(f"catalog answered {reply.status}")
        return reply

    async def settle_orphans(self) -> int:
        """Resolve pending orders no task is driving (left by a crash or a catalog timeout)."""
        settled = 0
        for order in self.machine.store.pending():
            if order.order_id in self._in_flight:
                continue
            try:
                reply = await self._catalog({"op": "resolve", "request_id": order.request_id})
            except TierUnavailable:
                return settled  # try again on the next sweep
            final = self._settle(order, reply.body)
            log.info("order %d settled after interruption: %s", order.order_id, final.status)
            settled += 1
        return settled

    async def run_settler(self) -> None:
        while True:
            try:
                await self.settle_orphans()
            except Exception:  # keep sweeping; one bad sweep must not end recovery
                log.exception("settling pending orders failed")
            await asyncio.sleep(SETTLE_INTERVAL)


def _outcome(order: Order) -> Order:
    if order.status == "done":
        return order
    if order.status == "out_of_stock":
        raise ApiError(409, "out_of_stock", f"item {order.item} is out of stock")
    if order.status == "unknown_item":
        raise not_found(f"no book with id {order.item}", "unknown_item")
    if order.status == "pending":
        raise unavailable("the buy is still being settled; retry with the same Idempotency-Key", code="outcome_unknown")
    raise unavailable("the buy was not carried out; retry")


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds")
