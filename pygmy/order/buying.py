"""The buy path: open an order, take a copy at the catalog, record the outcome — and finish what a crash left.

Invariant: every copy the catalog gave out belongs to exactly one `done` order. It holds because
1. the order is `pending` in the order group's log (committed on a majority) before the catalog is asked;
2. the catalog group applies each request id at most once, through whichever leader and however often
   it is retried, and remembers the result; ids are namespaced by the order group's cluster and epoch
   (`pygmy.common.request_ids`), so one restored from a backup never reuses an id the catalog has seen;
3. a pending order nobody is working on (after a crash, a leader change or a timeout) is settled by the
   order group's leader, asking the catalog to `resolve` its request id: the stored result if the
   decrement happened, else the id is marked aborted so a delayed decrement can never apply afterwards;
4. the settler advances a watermark through the order log (every order below it is settled) and hands it
   to the catalog, which then forgets those requests and refuses any of them that still arrives.
The buy runs on the order group's leader (a follower forwards it there). Two nodes settling the same
order at once (an old leader that has not yet heard it was deposed) is harmless: resolve and settle are
idempotent and the first settle wins.
"""

from __future__ import annotations

import asyncio
import datetime
import logging
from typing import Any

from pygmy.common.deadline import left_of
from pygmy.common.errors import ApiError, not_found, unavailable
from pygmy.common.metrics import ORDERS
from pygmy.common.request_ids import RequestId, namespace_text
from pygmy.common.tier_client import Reply, TierUnavailable
from pygmy.order.state_machine import order_from_state
from pygmy.order.store import Order
from pygmy.replica.client import GroupClient
from pygmy.replica.group import NotLeader, ProposalDropped, Replica

log = logging.getLogger(__name__)

SETTLE_INTERVAL = 1.0  # seconds between sweeps for orphaned pending orders
WATERMARK_INTERVAL = 5.0  # seconds between advances of the watermark
SETTLE_RETRY_DEADLINE = 5.0


class BuyService:
    def __init__(self, replica: Replica, catalog: GroupClient) -> None:
        self.replica = replica
        self.catalog = catalog
        # Orders this process is driving right now; a concurrent retry with the same key joins in.
        self._in_flight: dict[int, asyncio.Task[tuple[Order, list[str]]]] = {}
        self._seen_pending: set[int] = set()  # pending at the previous sweep (not just begun)
        self._watermark_sent = 0
        self._known_items: set[int] = set()
        self._item_lookups: dict[int, asyncio.Future[Reply]] = {}

    async def buy(self, item: int, key: str | None, gives_up_at: float | None = None) -> tuple[Order, list[str]]:
        """The settled order and the catalog's Server-Timing entries; ApiError for 404/409/503.

        `gives_up_at`: when (time.monotonic()) the caller stops waiting; the calls to the catalog get no
        longer than what is left of that, so the catalog, too, answers while someone still listens.

        Runs on the leader; NotLeader or ProposalDropped from the `begin` pass up (the HTTP layer goes to
        the new leader, and retries a buy with a key, which opens one order however often it is sent).
        After `begin`, a keyless buy that loses its leader is `outcome_unknown`: sent again, it would open
        a second order."""
        await self._check_item_exists(item, gives_up_at)
        result = await self.replica.propose({"op": "begin", "item": item, "time": _now(), "idempotency_key": key})
        try:
            return await self._finish(result, key, gives_up_at)
        except (NotLeader, ProposalDropped) as exc:
            if key is not None:
                # The retry finds the order its key opened. As ProposalDropped, even if this leader was
                # only deposed: the order is begun, so the request may have taken effect (replica/http.py).
                raise ProposalDropped(f"the order leader changed during the buy: {exc}") from exc
            raise unavailable(
                "the order leader changed during the buy; it may or may not have been carried out",
                code="outcome_unknown",
            ) from None

    async def _check_item_exists(self, item: int, gives_up_at: float | None) -> None:
        """Refuse a buy of an unknown item before anything is written (no order row, no catalog request).

        Books are never deleted, so an item once seen needs no second lookup."""
        if item in self._known_items:
            return
        # Concurrent buys of a new item share one lookup rather than queueing a lookup each.
        lookup = self._item_lookups.get(item)
        if lookup is None:
            lookup = asyncio.ensure_future(self.catalog.call("GET", f"/internal/books/{item}", idempotent=True,
                                                             deadline=left_of(gives_up_at, self.catalog.deadline)))
            self._item_lookups[item] = lookup
            lookup.add_done_callback(lambda _: self._item_lookups.pop(item, None))
        try:
            reply = await asyncio.shield(lookup)
        except TierUnavailable:
            raise unavailable("the catalog tier cannot be reached or has no leader; retry shortly") from None
        if reply.status == 404:
            raise not_found(f"no book with id {item}", "unknown_item")
        if reply.status != 200:
            raise unavailable("the catalog cannot say whether the book exists yet; retry shortly")
        self._known_items.add(item)

    async def _finish(self, result: dict[str, Any], key: str | None, gives_up_at: float | None) -> tuple[Order, list[str]]:
        if result.get("error") == "key_reused":
            raise ApiError(422, "idempotency_key_reused", "this Idempotency-Key was used to buy another item")
        order = order_from_state(result["order"])
        if order.status == "pending":
            task = self._in_flight.get(order.order_id)
            if task is None:
                task = asyncio.ensure_future(self._take_copy(order, fresh=result["created"], gives_up_at=gives_up_at))
                self._in_flight[order.order_id] = task
                task.add_done_callback(lambda _: self._in_flight.pop(order.order_id, None))
            # Shielded: a client that hangs up must not cancel the buy half-way.
            order, timings = await asyncio.shield(task)
        else:
            timings = []
        return _outcome(order), timings

    def namespace(self) -> tuple[str, int]:
        """This order group's (cluster, epoch); the epoch is in the replicated state (a restore bumps it)."""
        return self.replica.config.cluster_id or "pygmy", self.replica.machine.store.epoch()  # type: ignore[attr-defined]

    def request_id(self, order: Order) -> str:
        """The catalog request of this attempt: unique per attempt and, with the namespace, over all time."""
        return str(RequestId(*self.namespace(), order.order_id, order.attempt))

    async def _take_copy(self, order: Order, *, fresh: bool, gives_up_at: float | None) -> tuple[Order, list[str]]:
        """Ask the catalog for a copy under this order's request id. `fresh`: this attempt has never
        been sent before (so a failure to connect proves the catalog never saw it)."""
        try:
            reply = await self._catalog({"op": "decrement", "item": order.item, "request_id": self.request_id(order)},
                                        deadline=left_of(gives_up_at, self.catalog.deadline))
        except TierUnavailable as exc:
            # The copy may or may not be taken: leave the order pending for the settler to resolve.
            if fresh and not exc.sent:
                # This attempt never reached the catalog: settle it as not taken, so the answer is definite.
                final = await self._settle(order, {"ok": False, "error": "aborted"})
                if final.status == "aborted":
                    raise unavailable("the catalog tier cannot be reached or has no leader; retry shortly") from None
                return final, []  # another settle of this order came first: _outcome reports it
            log.warning("order %d: catalog went silent (%s); left pending", order.order_id, exc)
            raise unavailable(
                "the catalog tier went silent; the buy may or may not have happened; "
                "retry with the same Idempotency-Key to find out",
                code="outcome_unknown",
            ) from None
        timings = [reply.server_timing] if reply.server_timing else []
        return await self._settle(order, reply.body), timings

    async def _settle(self, order: Order, result: dict[str, Any]) -> Order:
        book = result.get("book") or {}
        if result.get("ok"):
            status = "done"
        else:
            status = {"out_of_stock": "out_of_stock", "not_found": "unknown_item"}.get(result.get("error", ""), "aborted")
        settled = await self._propose_settle({
            "op": "settle", "order_id": order.order_id, "attempt": order.attempt, "status": status,
            "title": book.get("title"), "cost": book.get("cost"),
        })
        final = order_from_state(settled["order"])
        if settled.get("changed"):
            ORDERS.labels(final.status).inc()
            log.info("order %d: item %d %s (attempt %d)", final.order_id, final.item, final.status, final.attempt)
        return final

    async def _propose_settle(self, command: dict[str, Any]) -> dict[str, Any]:
        """A settle is idempotent (the first one wins), so an unknown outcome is simply proposed again.
        If this node stopped leading, the new leader's settler finishes the order: the caller gets 503."""
        deadline = asyncio.get_running_loop().time() + SETTLE_RETRY_DEADLINE
        while True:
            try:
                return await self.replica.propose(command)
            except ProposalDropped:
                if asyncio.get_running_loop().time() >= deadline:
                    raise
            await asyncio.sleep(0.02)

    async def _catalog(self, command: dict[str, Any], deadline: float | None = None) -> Reply:
        # Every catalog command the order tier sends carries a request id (or is a watermark): it may be
        # sent again, to any catalog replica, after an unknown outcome.
        reply = await self.catalog.call("POST", "/internal/apply", json=command, idempotent=True, deadline=deadline)
        if reply.status != 200 or not isinstance(reply.body, dict):
            raise TierUnavailable(f"catalog answered {reply.status}")
        return reply

    async def settle_orphans(self) -> int:
        """Resolve pending orders no task is driving (left by a crash, a leader change or a catalog timeout).

        An order is taken only if it was pending at the previous sweep too, so one that was just begun
        (and whose buy is about to ask the catalog) is not aborted under its feet."""
        pending = (await self.replica.read_linearizable({"op": "pending"}))["orders"]
        seen, self._seen_pending = self._seen_pending, {o["order_id"] for o in pending}
        settled = 0
        for state in pending:
            order = order_from_state(state)
            if order.order_id in self._in_flight or order.order_id not in seen:
                continue
            try:
                reply = await self._catalog({"op": "resolve", "request_id": self.request_id(order)})
            except TierUnavailable:
                return settled  # try again on the next sweep
            final = await self._settle(order, reply.body)
            log.info("order %d settled after interruption: %s", order.order_id, final.status)
            settled += 1
        return settled

    async def advance_watermark(self) -> int:
        """Through the order log, then to the catalog: the orders below the watermark are all settled."""
        result = await self.replica.propose({"op": "watermark", "time": _now()})
        below = int(result["below"])
        if below > self._watermark_sent:
            await self._catalog({"op": "forget", "below": below, "namespace": namespace_text(*self.namespace())})
            self._watermark_sent = below
        return below

    async def run_settler(self) -> None:
        """On the leader only: finish orphaned orders every second, advance the watermark every few."""
        last_watermark = 0.0
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(SETTLE_INTERVAL)
            if not self.replica.is_leader():
                self._seen_pending = set()
                continue
            try:
                await self.settle_orphans()
                if loop.time() - last_watermark >= WATERMARK_INTERVAL:
                    await self.advance_watermark()
                    last_watermark = loop.time()
            except (NotLeader, ProposalDropped, TimeoutError, TierUnavailable) as exc:
                log.info("settler paused: %s", exc)
            except Exception:  # keep sweeping; one bad sweep must not end recovery
                log.exception("settling pending orders failed")


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
