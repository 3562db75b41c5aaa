"""The frontend's view of the backend replicas: a heartbeat per replica, and the status document built from it.

Every `heartbeat_ms` the monitor asks each replica for its `GET /internal/status`. A replica that answers is
up; one that refuses a connection is down at once (whether the heartbeat or a client's request found out:
`GroupClient` reports refusals here, so the next request does not try it); one that does not answer in time
twice running is down too (a stopped or cut-off process refuses nothing). A replica whose boot id changes
between two answers crashed (or was restarted) and came back: the reference's `get_crashed`.

`GET /health` is answered from this state, never by asking the replicas, so a burst of health checks costs
the replicas nothing and is as true under load as the last heartbeat (at most one interval old).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from typing import Any, Protocol

from aiohttp import web

from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.config import Config, Node

log = logging.getLogger(__name__)

HEARTBEAT_TIMEOUT = 1.0  # seconds a heartbeat waits for an answer; generous, as replicas share busy cores
MISSES_FOR_DOWN = 2  # unanswered (not refused) heartbeats in a row that mark a replica down
# While a replica is down or follows no leader, look again this often, so recovery is seen quickly.
RECHECK = 0.1


class CacheStatus(Protocol):
    """The frontend cache's line in /health (size, hit rate, lease state), when a cache runs."""

    def cache_status(self) -> dict[str, Any]: ...


# Set by the frontend cache when it runs; /health shows its cache_status() under "frontend" -> "cache".
CACHE_STATUS_KEY = web.AppKey("cache_status", CacheStatus)


@dataclasses.dataclass
class ReplicaView:
    """What this frontend knows of one replica."""

    node: Node
    up: bool = False
    document: dict[str, Any] | None = None  # its last /internal/status
    last_heartbeat: float | None = None  # wall-clock time of its last answer
    misses: int = 0
    boot_id: str | None = None
    restarts_seen: int = 0  # boot ids that changed while this frontend ran

    def row(self, now: float) -> dict[str, Any]:
        """This replica's line in the frontend's part of the status document."""
        return {
            "name": self.node.name,
            "status": "up" if self.up else "down",
            "last_heartbeat": self.last_heartbeat,
            "heartbeat_age": None if self.last_heartbeat is None else round(now - self.last_heartbeat, 3),
            "restarted": self.restarts_seen > 0,
            "restarts_seen": self.restarts_seen,
        }


class HealthMonitor:
    def __init__(self, tiers: TierClient, config: Config) -> None:
        self.tiers = tiers
        self.config = config
        self.interval = config.frontend.heartbeat_ms / 1000
        self.started = time.time()
        self.replicas = {n.url: ReplicaView(n) for n in config.nodes if n.kind != "frontend"}
        self._tasks: list[asyncio.Task[None]] = []
        self._refresh: asyncio.Task[None] | None = None
        self._refreshed = 0.0

    # -- the state GroupClient reads and reports to ------------------------------------------------

    def is_up(self, url: str) -> bool:
        view = self.replicas.get(url)
        return view is None or view.up

    def mark_down(self, url: str, reason: str) -> None:
        view = self.replicas.get(url)
        if view is not None and view.up:
            view.up = False
            log.warning("%s %s; it is marked down and gets no requests until it answers again", view.node.name, reason)

    def mark_up(self, url: str) -> None:
        view = self.replicas.get(url)
        if view is not None and not view.up:
            view.up = True
            view.misses = 0
            log.info("%s answers; it is marked up", view.node.name)

    # -- heartbeats --------------------------------------------------------------------------------

    async def start(self) -> None:
        """One round of heartbeats (so the first /health is already true), then one loop per replica."""
        await self._beat_all()
        self._tasks = [asyncio.create_task(self._loop(view)) for view in self.replicas.values()]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def refresh_if_leaderless(self) -> None:
        """When the last heartbeats saw a group with no leader (it may have just elected one), beat every
        replica again now: one round shared by every caller, at most once per RECHECK, so a burst of
        /health calls during an outage still costs each replica at most a status call per RECHECK."""
        if all(_group([_node_entry(v) for v in self.replicas.values() if v.node.kind == kind])["leader"]
               for kind in ("catalog", "order")):
            return
        if self._refresh is None or self._refresh.done():
            if time.monotonic() - self._refreshed < RECHECK:
                return
            self._refreshed = time.monotonic()
            self._refresh = asyncio.create_task(self._beat_all())
        await asyncio.shield(self._refresh)

    async def _beat_all(self) -> None:
        await asyncio.gather(*(self.beat(view) for view in self.replicas.values()))

    async def _loop(self, view: ReplicaView) -> None:
        while True:
            healthy = view.up and (view.document or {}).get("leader") is not None
            await asyncio.sleep(self.interval if healthy else min(self.interval, RECHECK))
            await self.beat(view)

    async def beat(self, view: ReplicaView) -> None:
        """Ask one replica for its status and record what the answer (or its absence) says."""
        url = view.node.url
        try:
            reply = await self.tiers.call("GET", f"{url}/internal/status", timeout=HEARTBEAT_TIMEOUT)
        except TierUnavailable as exc:
            if not exc.sent:
                self.mark_down(url, "refused the heartbeat's connection")
            else:
                self._missed(view)
            return
        if reply.status != 200 or not isinstance(reply.body, dict):
            self._missed(view)
            return
        self._record(view, reply.body)

    def _missed(self, view: ReplicaView) -> None:
        view.misses += 1
        if view.misses >= MISSES_FOR_DOWN:
            self.mark_down(view.node.url, f"missed {view.misses} heartbeats in a row")

    def _record(self, view: ReplicaView, document: dict[str, Any]) -> None:
        boot_id = document.get("boot_id")
        if view.boot_id is not None and boot_id != view.boot_id:
            view.restarts_seen += 1
            log.warning("%s restarted since its last heartbeat (a new boot id); %d restart(s) seen since this "
                        "frontend started", view.node.name, view.restarts_seen)
        view.boot_id = boot_id
        view.document = document
        view.last_heartbeat = time.time()
        view.misses = 0
        self.mark_up(view.node.url)

    # -- the status document -----------------------------------------------------------------------

    def document(self, cache: Any = None) -> dict[str, Any]:
        """The status document (docs/contracts.md) as the last heartbeats saw it, with this frontend's rows."""
        nodes: list[dict[str, Any]] = [
            {"kind": "frontend", "id": n.id, "name": n.name, "url": n.url, "status": "up", "role": "frontend"}
            for n in self.config.of_kind("frontend")
        ]
        for view in self.replicas.values():
            nodes.append(_node_entry(view))
        groups = {kind: _group([n for n in nodes if n["kind"] == kind]) for kind in ("catalog", "order")}
        now = time.time()
        frontend = {
            "started": self.started,
            "heartbeat_ms": self.config.frontend.heartbeat_ms,
            "replicas": [view.row(now) for view in self.replicas.values()],
            "cache": cache,
        }
        return {"status": _overall(groups, nodes), "groups": groups, "nodes": nodes, "frontend": frontend}


def _node_entry(view: ReplicaView) -> dict[str, Any]:
    n = view.node
    if view.up and view.document is not None:
        return view.document
    return {"kind": n.kind, "id": n.id, "name": n.name, "url": n.url, "status": "down", "role": None}


def _overall(groups: dict[str, dict[str, Any]], nodes: list[dict[str, Any]]) -> str:
    if any(g["leader"] is None for g in groups.values()):
        return "unavailable"
    if all(n["status"] == "up" for n in nodes):
        return "ok"
    return "degraded"


def _group(nodes: list[dict[str, Any]]) -> dict[str, Any]:
    leaders = [n for n in nodes if n.get("role") == "leader"]
    leader = max(leaders, key=lambda n: n["term"]) if leaders else None
    up = sum(1 for n in nodes if n["status"] == "up")
    return {
        "leader": leader["name"] if leader else None,
        "term": leader["term"] if leader else max((n.get("term") or 0 for n in nodes), default=0),
        "replicas": len(nodes),
        "up": up,
        "quorum": up > len(nodes) // 2,
    }
