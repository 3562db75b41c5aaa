"""The frontend's cache of lookup and search answers (docs/design.md, "The frontend cache").

Entries are whole answers (the JSON bytes, or the 404 of an unknown item or topic), kept in a bounded LRU
(cachetools) under keys `("book", id)` and `("search", topic, offset, limit)`. An entry is served only while
the frontend holds a catalog lease (`pygmy.frontend.lease`); without one every request reads through.

Safety rests on three rules, each guarding one way a stale answer could get in:
- the catalog leader sends `begin` for a key before it proposes a write that changes it, and waits for our
  ack: we drop the key and mark it pending; no fill of a pending key is stored;
- a fill that was in flight when a `begin` for its key arrived is *spoiled*: its answer goes to the requests
  that waited for it (a linearizable read, so correct for them) but is not stored (the stale-fill race);
- fills are linearizable catalog reads, so one that starts after a key stopped being pending reflects the
  write that made it pending.
Concurrent misses for one key share one fill (single flight).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Awaitable, Callable, Hashable

from cachetools import LRUCache

from pygmy.common.errors import ApiError
from pygmy.common.metrics import CACHE_EVICTIONS, CACHE_HITS, CACHE_INVALIDATIONS, CACHE_MISSES
from pygmy.config import CacheSettings

log = logging.getLogger(__name__)

Key = Hashable
# Test-only: hold every fill this long between the catalog's answer and storing it, so a test can land an
# invalidation inside that window deterministically (tests/test_cache.py). Read once, at start.
FILL_DELAY_ENV = "PYGMY_TEST_FILL_DELAY_MS"


@dataclasses.dataclass(frozen=True)
class Answer:
    """A catalog answer as the frontend serves it: the JSON body bytes, or the 404 it stands for."""

    body: bytes | None
    error: ApiError | None
    index: int  # the catalog's applied index the answer was read at (X-Pygmy-Index)


@dataclasses.dataclass
class _Flight:
    future: asyncio.Future[Answer]
    spoiled: bool = False  # a `begin` for the key arrived while this fill was in flight


class _Bounded(LRUCache):  # type: ignore[type-arg]
    """An LRU that counts what it pushes out (cachetools calls popitem to evict)."""

    def popitem(self):  # type: ignore[no-untyped-def]
        item = super().popitem()
        CACHE_EVICTIONS.inc()
        return item


class FrontendCache:
    def __init__(self, settings: CacheSettings, lease_left: Callable[[], float]) -> None:
        self.settings = settings
        self._lease_left = lease_left  # seconds our lease still runs (<= 0: expired or none)
        self._entries: _Bounded = _Bounded(maxsize=settings.size)
        self._flights: dict[Key, _Flight] = {}
        # key -> (token of the write, monotonic time its begin arrived): the time lets a renewal heal a
        # lost `end`; the token keeps a late `end` of one write from finishing the next write's mark.
        self._pending: dict[Key, tuple[str, float]] = {}
        self._hits = 0
        self._lookups = 0
        self._fill_delay = int(os.environ.get(FILL_DELAY_ENV, "0") or 0) / 1000

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, key: Key, fill: Callable[[], Awaitable[Answer]]) -> tuple[Answer, bool]:
        """The answer for `key` and whether it was a hit: from the cache while the lease is valid, else
        from one fill shared by every concurrent miss of the key."""
        if not self.settings.enabled:
            return await fill(), False
        self._lookups += 1
        if self._lease_left() > 0:
            cached = self._entries.get(key)
            if cached is not None:
                self._hits += 1
                CACHE_HITS.inc()
                return cached, True
        CACHE_MISSES.inc()
        flight = self._flights.get(key)
        if flight is None:
            # A fill that starts while a write on the key is in flight may read the old value: never stored.
            flight = _Flight(asyncio.get_running_loop().create_future(), spoiled=key in self._pending)
            self._flights[key] = flight
            asyncio.create_task(self._fill(key, flight, fill))
        return await asyncio.shield(flight.future), False

    async def _fill(self, key: Key, flight: _Flight, fill: Callable[[], Awaitable[Answer]]) -> None:
        try:
            answer = await fill()
            if self._fill_delay:
                await asyncio.sleep(self._fill_delay)
        except BaseException as exc:  # noqa: BLE001 - every waiter must hear the failure (a 503, a 400)
            self._flights.pop(key, None)
            flight.future.set_exception(exc)
            flight.future.exception()  # retrieved: no "never retrieved" warning when nobody waits any more
            return
        self._flights.pop(key, None)
        if self._may_store(key, flight):
            self._entries[key] = answer
        flight.future.set_result(answer)

    def _may_store(self, key: Key, flight: _Flight) -> bool:
        return not flight.spoiled and key not in self._pending

    # -- invalidation -----------------------------------------------------------------------------

    def begin(self, keys: list[Key], token: str) -> None:
        """A write that changes these keys is about to be proposed: drop them, refuse their fills."""
        now = time.monotonic()
        for key in keys:
            self._entries.pop(key, None)
            self._pending[key] = (token, now)
            flight = self._flights.get(key)
            if flight is not None:
                flight.spoiled = True
            CACHE_INVALIDATIONS.inc()

    def end(self, keys: list[Key], token: str) -> None:
        """The write `token` on these keys is applied: fills that start from now on may be stored."""
        for key in keys:
            if self._pending.get(key, ("", 0.0))[0] == token:
                del self._pending[key]

    def reconcile(self, asked_at: float, in_flight: set[Key]) -> None:
        """A lease reply to a request sent at `asked_at`: the leader has writes in flight on `in_flight`
        and on no other key. Those are marked pending (a frontend that subscribed after their `begin`
        went out must not fill them either); a mark older than the request on any other key is finished
        (its `end` was lost)."""
        now = time.monotonic()
        for key in in_flight:
            if key not in self._pending:
                self._pending[key] = ("lease", now)
                self._entries.pop(key, None)
                if (flight := self._flights.get(key)) is not None:
                    flight.spoiled = True
        for key, (_, since) in list(self._pending.items()):
            if since < asked_at and key not in in_flight:
                del self._pending[key]

    def clear(self) -> None:
        """Forget every entry: our lease lapsed, so invalidations may have been missed meanwhile."""
        self._entries.clear()
        for flight in self._flights.values():
            flight.spoiled = True

    # -- status -----------------------------------------------------------------------------------

    def cache_status(self) -> dict[str, object]:
        """The frontend's cache row for /health: size, capacity, hit rate and the lease's state."""
        left = self._lease_left() * 1000
        lease = "off" if not self.settings.enabled else "valid" if left > 0 else "expired"
        return {
            "size": len(self._entries),
            "capacity": self.settings.size,
            "hit_rate": round(self._hits / self._lookups, 4) if self._lookups else 0.0,
            "pending": len(self._pending),
            "lease": lease,
            "lease_expires_in_ms": max(0, round(left)) if lease == "valid" else 0,
        }


def key_from_json(raw: object) -> Key:
    """A key as sent over JSON (a list) back to the tuple the cache uses; ValueError if malformed."""
    if not isinstance(raw, list) or not raw or raw[0] not in ("book", "search"):
        raise ValueError(f"not a cache key: {raw!r}")
    return tuple(raw)
