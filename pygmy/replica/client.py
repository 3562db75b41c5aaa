"""Calling a replicated tier: any of its replicas, the leader first when it is known, the next on failure.

Every replica answers every request (a follower forwards writes to the leader), so choosing a replica is
only about speed, and a dead one only costs a retry on the next: a request that certainly never reached
a replica (connection refused) is always sent on; one whose outcome is unknown is sent on only if it is
`idempotent` (a decrement under its request id, a buy under its idempotency key, a read). A 503 from a
replica (no leader yet, still loading) is retried on the others until the deadline.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

from pygmy.common.tier_client import Reply, TierClient, TierUnavailable

LEADER_HEADER = "X-Pygmy-Leader"
RETRY_PAUSE = 0.05
# A replica that did not answer is tried last for this long: behind a partition every attempt costs a
# connect timeout, and the others keep naming it leader, so without this each request would pay again.
SUSPECT_SECONDS = 30.0


class GroupClient:
    def __init__(self, tiers: TierClient, urls: list[str], *, deadline: float = 6.0) -> None:
        self.tiers = tiers
        self.urls = list(urls)
        self.deadline = deadline
        self.leader: str | None = None  # learned from the X-Pygmy-Leader header of any answer
        self._turn = itertools.count()
        self._suspect: dict[str, float] = {}  # url -> until when (monotonic) it is tried last

    def order(self, prefer_leader: bool) -> list[str]:
        """Replicas in the order to try: the leader first (for writes), else a rotation (to spread reads);
        those that recently did not answer last."""
        start = next(self._turn) % len(self.urls)
        rotation = self.urls[start:] + self.urls[:start]
        if prefer_leader and self.leader in rotation:
            rotation.remove(self.leader)
            rotation.insert(0, self.leader)
        now = time.monotonic()
        return sorted(rotation, key=lambda url: self._suspect.get(url, 0.0) > now)  # stable: keeps the order

    async def call(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, str] | None = None,
        idempotent: bool,
        prefer_leader: bool = True,
        timeout: float | None = None,
    ) -> Reply:
        """The first definite answer (any status but 503) of a replica; TierUnavailable if none came in time.

        The TierUnavailable's `sent` is False only if no attempt may have reached a replica.
        """
        end = time.monotonic() + self.deadline
        sent = False
        last: Exception | None = None
        while True:
            refused = 0
            for url in self.order(prefer_leader):
                try:
                    reply = await self.tiers.call(method, url + path, json=json, params=params, timeout=timeout)
                except TierUnavailable as exc:
                    last = exc
                    self._suspect[url] = time.monotonic() + SUSPECT_SECONDS
                    if self.leader == url:
                        self.leader = None
                    refused += not exc.sent
                    if exc.sent:
                        sent = True
                        if not idempotent:
                            raise
                    continue
                self._suspect.pop(url, None)
                self._learn(reply)
                if reply.status != 503:
                    return reply
                last = TierUnavailable(f"{url} answered 503: {error_message(reply.body)}", sent=True)
                sent = sent or method != "GET"
                if not idempotent and method != "GET" and _code(reply) == "outcome_unknown":
                    return reply
            if refused == len(self.urls) and not sent:
                # Every replica refused the connection: the whole group is down, not electing; say so now.
                raise TierUnavailable(f"no replica of the group accepts connections: {last}", sent=False)
            if time.monotonic() >= end:
                raise TierUnavailable(f"no replica answered: {last}", sent=sent)
            await asyncio.sleep(RETRY_PAUSE)

    def _learn(self, reply: Reply) -> None:
        leader = reply.headers.get(LEADER_HEADER)
        if leader in self.urls:
            self.leader = leader


def _code(reply: Reply) -> str | None:
    error = reply.body.get("error") if isinstance(reply.body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def error_message(body: Any) -> str:
    """The message of a `{"error": {"code", "message"}}` body, or the start of whatever came instead."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message")) if isinstance(error, dict) else str(body)[:200]
