"""When a backend replica is ready for traffic: its group has a leader and it has caught up with it.

Like rqlite's `/readyz?sync`: a follower that answers reads from its own state must first have applied
everything the leader had committed when the probe came, or a load balancer would send it requests it
can only answer after a wait. On the leader, ready means it can still confirm its leadership (a ReadIndex
round succeeds); a replica rejoining as a non-voter, or one that stopped itself, is not ready.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from pygmy.common.probes import READY_BUDGET, not_ready, ready
from pygmy.common.tier_client import TierUnavailable
from pygmy.replica.group import NotLeader, ReadTimeout, Replica


async def readyz(request: web.Request) -> web.Response:
    from pygmy.replica.http import FORWARDED, REPLICA, TIERS  # here: http.py imports this module

    replica: Replica = request.app[REPLICA]
    if replica.group.failure is not None:
        raise not_ready("this replica stopped itself; see its log")
    status = replica.status()
    if status.catching_up:
        raise not_ready("this replica is rejoining and still copying the log")
    if status.leader is None:
        raise not_ready("no leader is known")
    if replica.is_leader():
        return await _leader_ready(replica)
    try:
        reply = await request.app[TIERS].call(
            "GET", replica.urls[status.leader] + "/internal/read-index", headers={FORWARDED: "1"}, timeout=READY_BUDGET / 2
        )
    except TierUnavailable:
        raise not_ready("the leader cannot be reached") from None
    index = reply.body.get("index") if reply.status == 200 and isinstance(reply.body, dict) else None
    if not isinstance(index, int):
        raise not_ready("the leader could not confirm its leadership")
    if not await replica.wait_applied(index, READY_BUDGET / 2):
        raise not_ready("this replica has not caught up with the leader")
    return ready()


async def _leader_ready(replica: Replica) -> web.Response:
    try:
        async with asyncio.timeout(READY_BUDGET):  # not wait_for: it can swallow a cancellation on 3.11
            await replica.read_linearizable({"op": "index"})
    except (NotLeader, ReadTimeout, asyncio.TimeoutError):
        raise not_ready("the leader could not confirm its leadership") from None
    return ready()
