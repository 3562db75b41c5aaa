"""A steady, bounded open-loop load against a frontend: what the control endpoint's /control/load runs.

Open loop: requests are sent at a fixed rate whether or not earlier ones have been answered, so a stall
of the cluster shows up as errors and late answers rather than as fewer requests sent. It is bounded in
time (`seconds`, at most MAX_SECONDS), in rate (MAX_RATE) and in requests in flight (MAX_IN_FLIGHT: past
that a request is counted as an error instead of piling up). Before buys run it restocks, through the
admin route, every book it may buy, so the load never stops on "out of stock".
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import time
from typing import Any, Literal

from pygmy.catalog.books import KNOWN_TOPICS
from pygmy.client.api import ApiCallError, PygmyClient

log = logging.getLogger(__name__)

Mix = Literal["lookup", "buy", "mixed"]
MIXES: dict[str, dict[str, float]] = {
    "lookup": {"lookup": 1.0},
    "buy": {"buy": 1.0},
    # Mostly reads, as a bookstore sees: the reference's client searched, looked up and bought in turn.
    "mixed": {"lookup": 0.5, "search": 0.3, "buy": 0.2},
}
MAX_RATE = 500.0
MAX_SECONDS = 3600.0
MAX_IN_FLIGHT = 256
RESTOCK_MARGIN = 1.2  # restock 20 % more than the buys the load can send


class LoadError(ValueError):
    """A load request that cannot be run as asked (the control endpoint answers 400)."""


@dataclasses.dataclass(frozen=True)
class LoadSpec:
    mix: Mix = "mixed"
    rate: float = 20.0
    seconds: float = 300.0

    @classmethod
    def parse(cls, body: dict[str, Any]) -> "LoadSpec":
        unknown = set(body) - {"mix", "rate", "seconds"}
        if unknown:
            raise LoadError(f"unknown field(s): {', '.join(sorted(unknown))}")
        mix = body.get("mix", "mixed")
        rate = body.get("rate", 20)
        seconds = body.get("seconds", 300)
        if mix not in MIXES:
            raise LoadError(f"mix must be one of {', '.join(MIXES)}, not {mix!r}")
        for name, value, top in (("rate", rate, MAX_RATE), ("seconds", seconds, MAX_SECONDS)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= top:
                raise LoadError(f"{name} must be a number above 0 and at most {top:g}, not {value!r}")
        return cls(mix=mix, rate=float(rate), seconds=float(seconds))

    @property
    def most_buys(self) -> int:
        return int(self.rate * self.seconds * MIXES[self.mix].get("buy", 0.0)) + 1


@dataclasses.dataclass
class LoadCounts:
    sent: int = 0
    ok: int = 0
    errors: int = 0


class Load:
    """One run of a LoadSpec: `start()` it, read `counts`, `stop()` it (or let it end)."""

    def __init__(self, url: str, admin_token: str, spec: LoadSpec) -> None:
        self.url = url
        self.admin_token = admin_token
        self.spec = spec
        self.counts = LoadCounts()
        self._task: asyncio.Task[None] | None = None
        self._in_flight: set[asyncio.Task[None]] = set()

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass

    def document(self) -> dict[str, Any]:
        return {"running": self.running, "mix": self.spec.mix, "rate": self.spec.rate,
                "seconds": self.spec.seconds, **dataclasses.asdict(self.counts)}

    async def _run(self) -> None:
        async with PygmyClient(self.url, admin_token=self.admin_token, timeout=5.0) as client:
            try:
                items = await books(client)
                if "buy" in MIXES[self.spec.mix]:
                    await restock(client, items, self.spec.most_buys)
                log.info("open-loop %s load at %g requests/s for %g s started", self.spec.mix, self.spec.rate, self.spec.seconds)
                await self._send_steadily(client, items)
                # The last requests get their answers (each within the client's timeout) before the load ends.
                await asyncio.gather(*self._in_flight, return_exceptions=True)
            except ApiCallError as exc:
                log.warning("the load could not prepare the store and did not start: %s", exc.message)
                self.counts.errors += 1
            finally:
                # Stopped early: requests still in flight are dropped, counted neither as answered nor as errors.
                for task in list(self._in_flight):
                    task.cancel()
                await asyncio.gather(*self._in_flight, return_exceptions=True)
                log.info("the load stopped after %d requests (%d answered, %d errors)",
                         self.counts.sent, self.counts.ok, self.counts.errors)

    async def _send_steadily(self, client: PygmyClient, items: list[int]) -> None:
        rng = random.Random()
        kinds, weights = zip(*MIXES[self.spec.mix].items())
        start = time.monotonic()
        total = int(self.spec.rate * self.spec.seconds)
        for n in range(total):
            # The n-th request is due at n / rate, however late the earlier ones are answered.
            delay = start + n / self.spec.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            self.counts.sent += 1
            if len(self._in_flight) >= MAX_IN_FLIGHT:
                self.counts.errors += 1
                continue
            task = asyncio.create_task(self._one(client, rng.choices(kinds, weights)[0], rng.choice(items)))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _one(self, client: PygmyClient, kind: str, item: int) -> None:
        try:
            await one_request(client, kind, item)
            self.counts.ok += 1
        except ApiCallError:
            self.counts.errors += 1


async def one_request(client: PygmyClient, kind: str, item: int, topic: str = "ds") -> Any:
    if kind == "lookup":
        return await client.lookup(item)
    if kind == "search":
        return await client.search(topic)
    return await client.buy(item)


async def books(client: PygmyClient) -> list[int]:
    """The ids of the books of the known topics (the default catalog's seven), or [1] if none is found."""
    ids: set[int] = set()
    for topic in KNOWN_TOPICS:
        try:
            answer = await client.search(topic)
        except ApiCallError as exc:
            if exc.status == 0 or exc.status >= 500:
                raise
            continue
        ids.update(int(book["id"]) for book in answer.body.get("items", []))
    return sorted(ids) or [1]


async def restock(client: PygmyClient, items: list[int], buys: int) -> None:
    """Raise each book's stock to at least `buys` × RESTOCK_MARGIN (every buy may land on one book)."""
    wanted = int(buys * RESTOCK_MARGIN) + 1
    for item in items:
        stock = int((await client.lookup(item)).body["stock"])
        if stock < wanted:
            await client.update(item, delta=wanted - stock)
            log.info("restocked book %d from %d to %d copies for the load", item, stock, wanted)
