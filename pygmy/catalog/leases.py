"""The catalog leader's side of the frontend cache: leases granted, and invalidation before every write.

A frontend holds a lease (`POST /internal/lease`) to answer from its cache; the leader records, per
frontend, `expires = now + lease + drift` on its own monotonic clock: that record is the subscription.
Before proposing a write that changes a cached answer, the leader sends `begin` for its keys to every
frontend whose lease has not expired and waits, per frontend, for the ack or for that lease to run out.
After the write is applied it sends `end` (best effort: a lost one is healed by the frontend's next
renewal, whose reply lists the keys with writes still in flight). Concurrent writes of one key share one
`begin` and one `end` (a hot item pays one round trip, not one per buy).

A new leader does not know its predecessor's leases, so it runs no invalidating write until one lease
plus drift has passed since it took office (every lease granted before then has run out by then).
docs/design.md gives the safety argument and the clock assumption.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
import uuid
from typing import Any, AsyncIterator, Hashable

from pygmy.common.metrics import LEASE_WAITS
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.config import CacheSettings
from pygmy.raft.core import Role
from pygmy.replica.group import NotLeader, Replica

log = logging.getLogger(__name__)

Key = Hashable
WATCH_PERIOD = 0.02  # how often the leader checks whether it took office (so the pause starts early)


@dataclasses.dataclass
class _Subscriber:
    instance: str
    url: str
    expires: float  # leader's monotonic clock
    # Invalidations sent and not yet acknowledged. While there are any, renewals do not extend the lease:
    # a write waits at most until it ends, and the frontend's next lease after that cannot continue this
    # one (the frontend then starts from an empty cache), so what it missed is never served.
    outstanding: int = 0


@dataclasses.dataclass
class _KeyWrites:
    """The writes in flight on one key: they share one `begin` and, when the last is done, one `end`."""

    token: str
    begun: asyncio.Future[None]
    count: int = 0
    lost: bool = False  # one of them had an unknown outcome: no `end`; the frontends' renewals heal


def invalidated_keys(command: dict[str, Any]) -> list[Key]:
    """The cached answers a catalog command may change: a buy or an update changes its book's lookup.
    Search pages hold ids and titles, which no command changes after the seed."""
    if command.get("op") in ("decrement", "update") and isinstance(command.get("item"), int):
        return [("book", command["item"])]
    return []


class LeaseTable:
    def __init__(self, replica: Replica, tiers: TierClient, settings: CacheSettings) -> None:
        self.replica = replica
        self.tiers = tiers
        self.settings = settings
        self.span = (settings.lease_ms + settings.drift_ms) / 1000
        self._subs: dict[str, _Subscriber] = {}
        self._writes: dict[Key, _KeyWrites] = {}
        self._term: int | None = None
        self._took_office = 0.0
        self._paused_logged = True

    # -- who leads ------------------------------------------------------------------------------

    async def watch(self) -> None:
        """Notice each new term of ours as soon as it starts: the new-leader pause counts from then."""
        while True:
            self._observe()
            await asyncio.sleep(WATCH_PERIOD)

    def _observe(self) -> int:
        status = self.replica.status()
        if status.role != Role.LEADER:
            if self._term is not None:
                self._term = None
                self._subs.clear()
            return status.term
        if status.term != self._term:
            # Leases granted by an earlier leader (or by us in an earlier term) are unknown here.
            self._term = status.term
            self._took_office = time.monotonic()
            self._subs.clear()
            self._paused_logged = False
        return status.term

    async def _wait_out_predecessors(self) -> None:
        term = self._observe()
        if self._term is None:
            raise NotLeader("not the leader")
        remaining = self._took_office + self.span - time.monotonic()
        if remaining <= 0:
            return
        if not self._paused_logged:
            self._paused_logged = True
            log.info("new catalog leader (term %d): writes that invalidate wait %.0f ms more, until every lease "
                     "an earlier leader may have granted has run out", term, remaining * 1000)
        await asyncio.sleep(remaining)
        if self._observe() != term or self._term is None:
            raise NotLeader("lost leadership while waiting out the previous leader's leases")

    # -- leases ---------------------------------------------------------------------------------

    async def grant(self, instance: str, url: str) -> dict[str, Any]:
        """Record a lease for a frontend, after confirming we lead (a deposed leader grants nothing)."""
        if not self.settings.enabled:
            return {"granted": False}
        received = time.monotonic()
        term = self._observe()
        await self.replica.read_linearizable({"op": "index"})  # NotLeader / ReadTimeout pass up
        if self._observe() != term or self._term is None:
            raise NotLeader("lost leadership while granting a lease")
        old = self._subs.get(url)
        continuous = old is not None and old.instance == instance and old.expires > received
        lease_ms = self.settings.lease_ms
        if continuous and old.outstanding:  # type: ignore[union-attr]
            # An invalidation to it is unanswered: keep the lease from outlasting what the write waits for.
            lease_ms = max(0, int((old.expires - received) * 1000) - self.settings.drift_ms)  # type: ignore[union-attr]
        elif continuous:
            old.expires = received + self.span  # type: ignore[union-attr]
        else:
            if old is None or old.instance != instance:
                log.info("frontend %s subscribed for invalidations (lease %d ms)", url, self.settings.lease_ms)
            self._subs[url] = _Subscriber(instance, url, received + self.span)
        return {
            "granted": True,
            "lease_ms": lease_ms,
            "continuous": continuous,
            "in_flight": [list(k) for k in self._writes],  # type: ignore[call-overload]
        }

    def _live(self) -> list[_Subscriber]:
        now = time.monotonic()
        for url in [u for u, s in self._subs.items() if s.expires <= now]:
            del self._subs[url]
        return list(self._subs.values())

    # -- invalidation ---------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def writing(self, keys: list[Key]) -> AsyncIterator[None]:
        """Around proposing a write that changes `keys`: every frontend has dropped them (or its lease
        has run out) before the body runs; `end` goes out after it returns normally."""
        if not keys or not self.settings.enabled:
            yield
            return
        await self._wait_out_predecessors()
        entries = [self._join(key) for key in keys]
        ok = False
        try:
            await asyncio.gather(*(asyncio.shield(e.begun) for e in entries))
            yield
            ok = True
        finally:
            self._leave(keys, entries, ok)

    def _join(self, key: Key) -> _KeyWrites:
        entry = self._writes.get(key)
        if entry is None:
            entry = _KeyWrites(uuid.uuid4().hex, asyncio.get_running_loop().create_future())
            self._writes[key] = entry
            asyncio.create_task(self._begin(key, entry))
        entry.count += 1
        return entry

    def _leave(self, keys: list[Key], entries: list[_KeyWrites], ok: bool) -> None:
        for key, entry in zip(keys, entries):
            entry.count -= 1
            entry.lost = entry.lost or not ok
            if entry.count == 0:
                del self._writes[key]
                if not entry.lost:
                    asyncio.create_task(self._send_all("end", [key], entry.token))

    async def _begin(self, key: Key, entry: _KeyWrites) -> None:
        try:
            await self._send_all("begin", [key], entry.token, wait=True)
        finally:
            entry.begun.set_result(None)

    async def _send_all(self, phase: str, keys: list[Key], token: str, *, wait: bool = False) -> None:
        await asyncio.gather(*(self._send(s, phase, keys, token, wait) for s in self._live()))

    async def _send(self, sub: _Subscriber, phase: str, keys: list[Key], token: str, wait: bool) -> None:
        """One frontend's ack; without one (it is stopped, cut off, or gone) wait until its lease ends."""
        left = sub.expires - time.monotonic()
        body = {"phase": phase, "keys": [list(k) for k in keys], "token": token}  # type: ignore[call-overload]
        sub.outstanding += wait
        try:
            if await self._acked(sub, body, left) or not wait:
                return
            await self._wait_out(sub)
        finally:
            sub.outstanding -= wait

    async def _acked(self, sub: _Subscriber, body: dict[str, Any], left: float) -> bool:
        try:
            reply = await self.tiers.call("POST", sub.url, json=body, timeout=max(left, 0.01))
        except TierUnavailable:
            return False
        return reply.status == 200

    async def _wait_out(self, sub: _Subscriber) -> None:
        # No ack (the frontend is stopped, cut off, or gone): the write waits until its lease has ended,
        # part of which the call may already have spent (renewals granted meanwhile did not extend it).
        LEASE_WAITS.inc()
        left = sub.expires - time.monotonic()
        log.warning("frontend %s did not acknowledge an invalidation; the write waited for its lease to end "
                    "(%.0f ms more)", sub.url, max(left, 0) * 1000)
        if left > 0:
            await asyncio.sleep(left)
