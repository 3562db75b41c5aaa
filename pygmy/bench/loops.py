"""Load loops, bounded in requests and in time: closed loop (each of C clients sends its next request when
the previous is answered) and open loop (requests at a fixed rate, timed from when each was due, so a
stall shows as latency instead of as fewer requests: no coordinated omission)."""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import random
import time
from typing import Callable, Sequence

from pygmy.bench.sampling import Sample, timed
from pygmy.client.api import PygmyClient

MAX_IN_FLIGHT = 512  # open loop: past this many unanswered requests a due request is counted as dropped


@dataclasses.dataclass(frozen=True)
class Mix:
    """Weights of lookup, search and buy; parsed from "lookup", "buy", "search" or "90/10" (lookup/buy),
    "60/30/10" (lookup/search/buy)."""

    weights: dict[str, float]

    @classmethod
    def parse(cls, text: str) -> "Mix":
        if text in ("lookup", "search", "buy"):
            return cls({text: 1.0})
        parts = text.split("/")
        names = {2: ("lookup", "buy"), 3: ("lookup", "search", "buy")}.get(len(parts))
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if names is None or len(numbers) != len(parts) or any(n < 0 for n in numbers) or sum(numbers) <= 0:
            raise ValueError(f"mix {text!r}: give lookup, search, buy, LOOKUP/BUY (90/10) or LOOKUP/SEARCH/BUY (60/30/10)")
        return cls({name: n / sum(numbers) for name, n in zip(names, numbers) if n > 0})

    @property
    def label(self) -> str:
        return "/".join(f"{k} {v:.0%}" for k, v in self.weights.items())

    def picker(self, seed: int | None = None) -> Callable[[], str]:
        rng = random.Random(seed)
        kinds, weights = list(self.weights), list(self.weights.values())
        return lambda: rng.choices(kinds, weights)[0]


async def closed_loop(clients: Sequence[PygmyClient], concurrency: int, mix: Mix, items: Sequence[int], *,
                      seconds: float, max_requests: int, tick: Callable[[], None] = lambda: None) -> tuple[list[Sample], float]:
    """`concurrency` workers, spread over `clients` (one per frontend); the samples and the elapsed time."""
    samples: list[Sample] = []
    pick = mix.picker()
    rng = random.Random()
    budget = itertools.count()
    deadline = time.monotonic() + seconds

    async def worker(client: PygmyClient) -> None:
        while time.monotonic() < deadline and next(budget) < max_requests:
            samples.append(await timed(client, pick(), rng.choice(items)))
            tick()

    start = time.monotonic()
    await asyncio.gather(*(worker(clients[i % len(clients)]) for i in range(concurrency)))
    return samples, time.monotonic() - start


async def open_loop(clients: Sequence[PygmyClient], rate: float, mix: Mix, items: Sequence[int], *,
                    seconds: float, tick: Callable[[], None] = lambda: None) -> tuple[list[Sample], int]:
    """`rate` requests/s for `seconds`; samples timed from when each request was due, and how many were
    dropped (not sent because MAX_IN_FLIGHT were unanswered)."""
    samples: list[Sample] = []
    pick = mix.picker()
    rng = random.Random()
    in_flight: set[asyncio.Task[None]] = set()
    dropped = 0
    start = time.monotonic()

    async def one(client: PygmyClient, due: float) -> None:
        sample = await timed(client, pick(), rng.choice(items))
        late = (sample.start - due) * 1000  # waiting for its turn counts: the answer came that much later
        tiers = {**sample.tiers, "client": sample.tiers["client"] + max(0.0, late)}
        samples.append(dataclasses.replace(sample, start=due, tiers=tiers))
        tick()

    for n in range(int(rate * seconds)):
        due = start + n / rate
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        if len(in_flight) >= MAX_IN_FLIGHT:
            dropped += 1
            continue
        task = asyncio.create_task(one(clients[n % len(clients)], due))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)
    await asyncio.gather(*in_flight)
    return samples, dropped


def rate_row(samples: list[Sample], elapsed: float) -> dict[str, float]:
    """Answered requests/s, p50/p99 client latency of the answered ones, and the error count."""
    from pygmy.bench.sampling import percentile

    ok = [s.tiers["client"] for s in samples if s.ok]
    return {
        "requests": len(samples),
        "ok_per_s": len(ok) / elapsed if elapsed > 0 else 0.0,
        "p50_ms": percentile(ok, 50),
        "p99_ms": percentile(ok, 99),
        "errors": sum(1 for s in samples if not s.ok),
    }
