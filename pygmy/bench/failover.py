"""`pygmy bench failover`: a steady open-loop load while the control endpoint kill -9s the catalog leader,
then an order follower, then the order leader (the supervisor restarts each); answers and errors per
100 ms, and each kill's time to recover.

Time to recover from a kill: from the kill to the last answer, among those that came after it (and before
the next kill), that was an error or took more than SLOW_FACTOR times the p99 before the first kill (at
least SLOW_FLOOR_MS); 0 if there was none. Answers are counted by when they came, not when they were
sent, so a request in flight at a kill counts for that kill, not for the one before. Writes paused: the
longest time without an answered buy, from the last buy answered before the kill to the next kill.

The victim's role is the one its own status document (relayed by the frontend's /health, with its
pid) reports at kill time; after a leader's kill the bench waits (up to ELECTION_WAIT) to see a new
leader with a higher term, and records it, so the table shows that a leader really was killed."""

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
ELECTION_WAIT = 10.0
VICTIMS = (("catalog", "leader"), ("order", "follower"), ("order", "leader"))


@dataclasses.dataclass(frozen=True)
class Kill:
    at: float  # seconds since the load started
    node: str
    role: str  # "<kind> <role>" as the victim's own status reported it just before the kill
    term: int  # the victim's Raft term then
    pid: int | None  # the process killed (from the control endpoint)
    new_leader: str = ""  # after a leader's kill: the group's next leader, as the frontend saw it
    new_term: int = 0
    elected_after_s: float = float("nan")  # from the kill until the frontend saw that leader


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

    async def health(self) -> dict[str, Any]:
        async with self.session.get(self.target.url + "/health") as resp:
            return dict(await resp.json())

    async def victim(self, kind: str, role: str) -> dict[str, Any]:
        """The status row (role, term, pid) of a node of `kind` that reports `role` itself: the leader
        with the highest term, or a follower that is up."""
        nodes = [n for n in (await self.health())["nodes"] if n["kind"] == kind and n["status"] == "up"]
        if role == "leader":
            leaders = [n for n in nodes if n.get("role") == "leader"]
            if not leaders:
                raise RuntimeError(f"the {kind} group has no leader to kill")
            return max(leaders, key=lambda n: n["term"])
        followers = [n for n in nodes if n.get("role") == "follower"]
        if not followers:
            raise RuntimeError(f"the {kind} group has no live follower to kill")
        return followers[0]

    async def next_leader(self, kind: str, term: int, deadline: float) -> tuple[str, int] | None:
        """The leader of `kind` with a term above `term`, once the frontend sees one (None by `deadline`)."""
        while time.monotonic() < deadline:
            group = (await self.health())["groups"][kind]
            if group["leader"] is not None and group["term"] > term:
                return str(group["leader"]), int(group["term"])
            await asyncio.sleep(0.05)
        return None

    async def pid(self, name: str) -> int | None:
        async with self.session.get(f"{self.target.control_url}/control/nodes") as resp:
            rows = (await resp.json())["nodes"]
        return next((r["pid"] for r in rows if r["name"] == name), None)

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
    """Each victim at 1/4, 2/4 and 3/4 of the run (its role read just before)."""
    kills = []
    for i, (kind, role) in enumerate(VICTIMS, start=1):
        await asyncio.sleep(max(0.0, started + seconds * i / (len(VICTIMS) + 1) - time.monotonic()))
        kills.append(await _kill_one(control, started, kind, role))
    return kills


async def _kill_one(control: Control, started: float, kind: str, role: str) -> Kill:
    row = await control.victim(kind, role)
    name = str(row["name"])
    pid = await control.pid(name)
    if row.get("pid") is not None and pid is not None and row["pid"] != pid:
        raise RuntimeError(f"{name} reported pid {row['pid']} but the control endpoint runs pid {pid}")
    at = time.monotonic() - started
    await control.kill(name)
    kill = Kill(at, name, f"{kind} {row['role']}", int(row["term"]), pid)
    if row["role"] != "leader":
        return kill
    seen = await control.next_leader(kind, kill.term, time.monotonic() + ELECTION_WAIT)
    if seen is None:
        return kill
    return dataclasses.replace(kill, new_leader=seen[0], new_term=seen[1], elected_after_s=time.monotonic() - started - at)


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
    """Per kill: the answers between it and the next kill, the errors and slow ones, the time to recover,
    and the longest time without an answered buy."""
    started: float = result["started"]
    samples: list[Sample] = result["samples"]
    kills: list[Kill] = result["kills"]
    first = kills[0].at if kills else float("inf")
    before = [s.tiers["client"] for s in samples if s.ok and s.start - started < first]
    slow = max(SLOW_FLOOR_MS, SLOW_FACTOR * percentile(before, 99)) if before else SLOW_FLOOR_MS
    rows = []
    for i, kill in enumerate(kills):
        until = kills[i + 1].at if i + 1 < len(kills) else float("inf")
        window = [s for s in samples if kill.at <= s.end - started < until]
        bad = [s for s in window if not s.ok or s.tiers["client"] > slow]
        recover = max((s.end - started - kill.at for s in bad), default=0.0)
        rows.append({"kill_at_s": kill.at, "node": kill.node, "pid": kill.pid, "role": kill.role, "term": kill.term,
                     "new_leader": kill.new_leader, "new_term": kill.new_term or None,
                     "elected_after_s": kill.elected_after_s, "requests": len(window),
                     "errors": sum(1 for s in window if not s.ok), "slow": sum(1 for s in bad if s.ok),
                     "slow_threshold_ms": slow, "recover_s": recover,
                     "writes_paused_s": writes_paused(samples, started, kill.at, min(until, result["seconds"]))})
    return rows


def writes_paused(samples: list[Sample], started: float, kill_at: float, until: float) -> float:
    """The longest gap between answered buys, from the last one answered before the kill to `until`
    (nan without buys): how long the kill stopped writes, plus the usual gap between two buys."""
    ends = sorted(s.end - started for s in samples if s.ok and s.kind == "buy")
    last_before = max((t for t in ends if t < kill_at), default=None)
    if last_before is None:
        return float("nan")
    after = [t for t in ends if kill_at <= t < until]
    points = [last_before, *after] if after else [last_before, until]
    return max(b - a for a, b in zip(points, points[1:]))
