"""The frontend's lease from the catalog leader: the permission to answer from its cache.

The lease clock starts when the request is *sent* (monotonic), so however long the request and its reply
take, our lease ends no later than the leader's record of it (which starts when the leader receives the
request, plus a drift margin). Renewals go out every third of a lease; a frontend that cannot renew lets
its lease run out and reads through. Taking a lease is also how a frontend subscribes for invalidations:
the leader sends `begin`/`end` to the URL given here while the lease lasts.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid

from pygmy.common.metrics import LEASE_RENEWALS
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.config import CacheSettings
from pygmy.frontend.cache import FrontendCache, key_from_json
from pygmy.replica.client import GroupClient

log = logging.getLogger(__name__)


class LeaseKeeper:
    def __init__(self, settings: CacheSettings, tiers: TierClient, catalog_urls: list[str], callback_url: str) -> None:
        self.settings = settings
        self.instance = uuid.uuid4().hex  # a restarted frontend is a new subscriber with an empty cache
        self.callback_url = callback_url
        # Its own client: a renewal gives up within one lease rather than the writes' longer deadline.
        self._catalog = GroupClient(tiers, catalog_urls, deadline=settings.lease_ms / 1000)
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self.cache: FrontendCache = FrontendCache(settings, self.left)

    def left(self) -> float:
        """Seconds our lease still runs on our own clock (<= 0: none)."""
        return self._valid_until - time.monotonic()

    def valid(self) -> bool:
        return self.left() > 0

    def cache_status(self) -> dict[str, object]:
        """The frontend's cache row for /health (size, capacity, hit rate, lease state)."""
        return self.cache.cache_status()

    def start(self) -> None:
        if self.settings.enabled:
            self._task = asyncio.create_task(self._renew_forever())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _renew_forever(self) -> None:
        period = self.settings.lease_ms / 3000
        was_valid = False
        while True:
            started = time.monotonic()
            try:
                await self.renew()
            except TierUnavailable as exc:
                log.debug("lease renewal failed: %s", exc)
            except Exception:  # noqa: BLE001 - the loop must outlive any one bad reply
                log.exception("lease renewal failed unexpectedly")
            if self.valid() != was_valid:
                was_valid = self.valid()
                log.info("the frontend %s its catalog lease", "holds" if was_valid else "lost")
            await asyncio.sleep(max(0.0, period - (time.monotonic() - started)))

    async def renew(self) -> None:
        sent_at = time.monotonic()
        reply = await self._catalog.call(
            "POST", "/internal/lease", json={"frontend": self.instance, "url": self.callback_url}, idempotent=True,
            timeout=self.settings.lease_ms / 1000,
        )
        body = reply.body if isinstance(reply.body, dict) else {}
        if reply.status != 200 or not body.get("granted"):
            return
        lease_ms = min(int(body["lease_ms"]), self.settings.lease_ms)
        if not body.get("continuous") or sent_at >= self._valid_until:
            # The leader may have sent invalidations we were not subscribed for: start from nothing.
            self.cache.clear()
        self.cache.reconcile(sent_at, {key_from_json(k) for k in body.get("in_flight", [])})
        self._valid_until = sent_at + lease_ms / 1000
        LEASE_RENEWALS.inc()
