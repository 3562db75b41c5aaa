"""The dashboard's one sampler: every second, the status document and each tier's rates, pushed to every
open dashboard; it keeps the last minutes so a page opened late draws its chart at once.

One sampler per frontend process, however many dashboards are open, so ten browser tabs do not poll the
cluster ten times. It runs only while someone watches (and a minute after).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from typing import Any

import aiohttp
import orjson

from pygmy.config import Config
from pygmy.web.events import events_between
from pygmy.web.rates import NodeCounters, growth, parse_counters, tier_rates

log = logging.getLogger(__name__)

INTERVAL = 1.0
HISTORY = 300  # samples: five minutes at one a second
EVENTS = 50
SCRAPE_TIMEOUT = 1.5
TIERS = ("frontend", "catalog", "order")
# Sampling goes on this long after the last dashboard closed, so a reload or a visit to the store and
# back finds the chart without a gap.
LINGER = 60.0


class Monitor:
    def __init__(self, config: Config, status_url: str) -> None:
        self.config = config
        self.status_url = status_url  # this frontend's own /health: the status document, cache row included
        self.history: collections.deque[dict[str, Any]] = collections.deque(maxlen=HISTORY)
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENTS)
        self.latest: dict[str, Any] | None = None
        self._subscribers: set[asyncio.Queue[dict[str, Any]]] = set()
        self._counters: dict[str, tuple[NodeCounters, float]] = {}  # node -> last counters, when scraped
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    # -- subscribers ----------------------------------------------------------------------------------

    def subscribe(self) -> asyncio.Queue[dict[str, Any]]:
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=10)
        self._subscribers.add(queue)
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run())
        return queue

    def unsubscribe(self, queue: asyncio.Queue[dict[str, Any]]) -> None:
        self._subscribers.discard(queue)

    def backlog(self) -> dict[str, Any]:
        return {"history": list(self.history), "events": list(self.events), "latest": self.latest}

    def _publish(self, frame: dict[str, Any]) -> None:
        for queue in list(self._subscribers):
            if queue.full():
                # A tab that stopped reading (asleep, throttled) loses its oldest frame, not the server's memory.
                queue.get_nowait()
            queue.put_nowait(frame)

    # -- sampling -------------------------------------------------------------------------------------

    async def _run(self) -> None:
        log.info("A dashboard is watching: sampling the cluster every %.0f s.", INTERVAL)
        watched_at = time.monotonic()
        while self._subscribers or time.monotonic() - watched_at < LINGER:
            started = time.monotonic()
            if self._subscribers:
                watched_at = started
            try:
                self._publish(await self.sample())
            except Exception:  # the sampler must outlive any one bad answer
                log.exception("Sampling the cluster for the dashboard failed; trying again in a second.")
            await asyncio.sleep(max(0.0, INTERVAL - (time.monotonic() - started)))
        log.info("No dashboard has watched for %.0f s: the sampler stops.", LINGER)

    async def sample(self) -> dict[str, Any]:
        status, rates = await asyncio.gather(self._status(), self._rates())
        now = time.time()
        point = {"time": now, "rates": rates}
        self.history.append(point)
        new_events = [{"time": now, "text": text} for text in events_between(self.latest, status)] if status else []
        self.events.extend(new_events)
        if status:
            self.latest = status
        return {"time": now, "status": status, "rates": rates, "events": new_events}

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT * 2),
                headers={"X-Pygmy-Secret": self.config.cluster_secret},
            )
        return self._session

    async def _status(self) -> dict[str, Any] | None:
        try:
            async with self._client().get(self.status_url) as resp:
                body = orjson.loads(await resp.read())
        except (aiohttp.ClientError, asyncio.TimeoutError, orjson.JSONDecodeError) as exc:
            log.warning("The dashboard could not read the status document from %s: %s", self.status_url, exc)
            return None
        return body if isinstance(body, dict) and "nodes" in body else None

    async def _scrape(self, url: str) -> NodeCounters | None:
        try:
            async with self._client().get(f"{url}/metrics", timeout=aiohttp.ClientTimeout(total=SCRAPE_TIMEOUT)) as resp:
                if resp.status != 200:
                    return None
                return parse_counters(await resp.text())
        except (aiohttp.ClientError, asyncio.TimeoutError, ValueError):
            return None  # a node that is down sends nothing: it adds nothing to its tier's rate

    async def _rates(self) -> dict[str, Any]:
        nodes = list(self.config.nodes)
        scraped = await asyncio.gather(*(self._scrape(n.url) for n in nodes))
        now = time.monotonic()
        deltas: dict[str, list[tuple[NodeCounters, float]]] = {tier: [] for tier in TIERS}
        for node, counters in zip(nodes, scraped):
            if counters is None:
                continue  # down or slow: its growth shows at its next answer (a restart counts from 0)
            before = self._counters.get(node.name)
            self._counters[node.name] = (counters, now)
            if before is not None:
                deltas[node.kind].append((growth(before[0], counters), now - before[1]))
        if not any(deltas.values()):
            return {}  # the first scrape only sets the baseline
        return {tier: tier_rates(d).to_json() for tier, d in deltas.items()}

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
