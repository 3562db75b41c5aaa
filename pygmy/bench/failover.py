"""`pygmy bench failover`: a steady open-loop load while the control endpoint kill -9s the catalog leader,
then an order follower, then the order leader (the supervisor restarts each); answers and errors per
100 ms, and each kill's time to recover.

Time to recover from a kill: from the kill to the answer of the last request sent after it (and before
the next kill) that failed or took more than SLOW_FACTOR times the p99 before the first kill (at least
SLOW_FLOOR_MS); 0 if there was none."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from typing import Any, Callable

import aiohttp

from pygmy.bench.loops import Mix, open_loop
from pygmy.bench.prepare import ready_books
from pygmy.bench.sampling import Sample, percentile
from pygmy.bench.target import Target
from pygmy.client.api import PygmyClient

BIN = 0.1
SLOW_FACTOR = 4.0
SLOW_FLOOR_MS = 100.0
VICTIMS = (("catalog", "leader"), ("order", "follower"), ("order", "leader"))


@dataclasses.dataclass(frozen=True)
class Kill:
    at: float  # seconds since the load started
    node: str
    role: str


class Control:
    """The control endpoint of the cluster under test, and the frontend's view of who leads."""

    def __init__(self, target: Target) -> None:
        if target.control_url is None:
            raise ValueError("failover needs the control endpoint: --spawn, or --control-url of a `pygmy up --control`")
        self.target = target
        self.session = aiohttp.ClientSession(headers={"Authorization": f"Bearer {target.admin_token}"},
                                             timeout=aiohttp.ClientTimeout(total=15))

    async def close(self) -> None:
        await self.session.close()

    async def victim(self, kind: str, role: str) -> str:
        async with self.session.get(self.target.url + "/health") as resp:
            health = await resp.json()
        leader = health["groups"][kind]["leader"]
        if role == "leader":
            if leader is None:
                raise RuntimeError(f"the {kind} group has no leader to kill")
            return str(leader)
        followers = [n["name"] for n in health["nodes"] if n["kind"] == kind and n["name"] != leader and n["status"] == "up"]
        if not followers:
            raise RuntimeError(f"the {kind} group has no live follower to kill")
        return str(followers[0])

    async def kill(self, name: str) -> None:
        async with self.session.post(f"{self.target.control_url}/control/nodes/{name}/kill") as resp:
            if resp.status != 200:
                raise RuntimeError(f"the control endpoint refused to kill {name}: {resp.status} {await resp.text()}")


async def run(target: Target, *, rate: float, seconds: float, mix: Mix, tick: Callable[[], None]) -> dict[str, Any]:
    """The samples' timeline, the kills, and each kill's time to recover."""
    control = Control(target)
    async with PygmyClient(target.url, admin_token=target.admin_token, timeout=15.0) as client:
        try:
            items = await ready_books(client, int(rate * seconds) + 1)
            started = time.monotonic()
            load = asyncio.create_task(open_loop([client], rate, mix, items, seconds=seconds, tick=tick))
            kills = await _kill_in_turn(control, started, seconds)
            samples, dropped = await load
        finally:
            await control.close()
    return {"samples": samples, "kills": kills, "dropped": dropped, "started": started, "seconds": seconds}


async def _kill_in_turn(control: Control, started: float, seconds: float) -> list[Kill]:
    """Each victim at 1/4, 2/4 and 3/4 of the run (its leader found just before)."""
    kills = []
    for i, (kind, role) in enumerate(VICTIMS, start=1):
        await asyncio.sleep(max(0.0, started + seconds * i / (len(VICTIMS) + 1) - time.monotonic()))
        name = await control.victim(kind, role)
        at = time.monotonic() - started
        await control.kill(name)
        kills.append(Kill(at, name, f"{kind} {role}"))
    return kills


def timeline(result: dict[str, Any]) -> list[dict[str, float]]:
    """Per 100 ms bin (by when the answer came): answered and failed requests."""
    started, seconds = result["started"], result["seconds"]
    bins = int(seconds / BIN) + 1 + 50
    ok, errors = [0] * bins, [0] * bins
    for s in result["samples"]:
        index = min(bins - 1, max(0, int((s.end - started) / BIN)))
        (ok if s.ok else errors)[index] += 1
    last = max((i for i in range(bins) if ok[i] or errors[i]), default=0)
    return [{"t": round(i * BIN, 3), "ok": ok[i], "errors": errors[i]} for i in range(last + 1)]


def recoveries(result: dict[str, Any]) -> list[dict[str, Any]]:
    started: float = result["started"]
    samples: list[Sample] = result["samples"]
    kills: list[Kill] = result["kills"]
    first = kills[0].at if kills else float("inf")
    before = [s.tiers["client"] for s in samples if s.ok and s.start - started < first]
    slow = max(SLOW_FLOOR_MS, SLOW_FACTOR * percentile(before, 99)) if before else SLOW_FLOOR_MS
    rows = []
    for i, kill in enumerate(kills):
        until = kills[i + 1].at if i + 1 < len(kills) else float("inf")
        window = [s for s in samples if kill.at <= s.start - started < until]
        bad = [s for s in window if not s.ok or s.tiers["client"] > slow]
        recover = max((s.end - started - kill.at for s in bad), default=0.0)
        rows.append({"kill_at_s": kill.at, "node": kill.node, "role": kill.role, "requests": len(window),
                     "errors": sum(1 for s in window if not s.ok), "slow": sum(1 for s in bad if s.ok),
                     "slow_threshold_ms": slow, "recover_s": recover})
    return rows
