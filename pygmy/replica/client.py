"""Calling a replicated tier: reads round-robin over the healthy replicas, writes to the known leader, and a
failed attempt retried on the next replica.

Every replica answers every request (a follower forwards writes to the leader and serves linearizable reads
after asking the leader for its index), so choosing a replica is only about speed and load, and a dead one
only costs a retry on the next: a request that certainly never reached a replica (connection refused) is
always sent on; one whose outcome is unknown is sent on only if it is `idempotent` (a decrement under its
request id, a buy under its idempotency key, a read). A 503 from a replica (no leader yet, still loading) is
retried on the others until the deadline; if every 503 promised "not carried out" (errors.NOT_CARRIED_OUT)
and no attempt went silent, the TierUnavailable says the write was never `sent`, so callers can answer
"not carried out" rather than "outcome unknown".

Retries wait a jittered, exponentially growing pause (so callers that failed together do not come back
together) and draw on a `RetryBudget` (so a tier that is down gets at most a fixed fraction more requests,
not a multiple). The caller's deadline goes along in a header (`pygmy.common.deadline`), so a replica never
waits for a leader longer than its caller will wait for it.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from typing import Any, Protocol

from pygmy.common.deadline import deadline_header
from pygmy.common.errors import NOT_CARRIED_OUT
from pygmy.common.metrics import ATTEMPTS
from pygmy.common.tier_client import Reply, TierClient, TierUnavailable

LEADER_HEADER = "X-Pygmy-Leader"
BACKOFF_BASE = 0.01  # seconds: the first retry waits up to this, each later one up to twice the one before
BACKOFF_CAP = 0.25


class ReplicaHealth(Protocol):
    """What a GroupClient asks of a health monitor (`pygmy.frontend.health.HealthMonitor`)."""

    def is_up(self, url: str) -> bool: ...

    def mark_down(self, url: str, reason: str) -> None: ...

    def mark_up(self, url: str) -> None: ...


class RetryBudget:
    """A token bucket for retries (Finagle's RetryBudget, gRPC's retry throttling): each request puts in
    `ratio` tokens, each retry takes one, and a small `reserve` (refilled at `per_second`) lets a quiet
    caller retry at all. So retries stay under about ratio x requests when a whole tier fails. Tokens
    saved up are capped at the reserve plus what the last `window` requests earned, so a long quiet
    spell does not bank a storm of retries."""

    def __init__(self, ratio: float, *, reserve: float = 10.0, per_second: float = 5.0, window: int = 100) -> None:
        self.ratio = ratio
        self.reserve = reserve
        self.per_second = per_second
        self.cap = reserve + ratio * window
        self._tokens = reserve
        self._refilled = time.monotonic()
        self.spent = 0  # retries granted
        self.refused = 0  # retries refused for want of tokens

    def deposit(self) -> None:
        """One request was sent: it earns `ratio` of a retry."""
        self._refill()
        self._tokens = min(self.cap, self._tokens + self.ratio)

    def withdraw(self) -> bool:
        """Whether one retry may be sent now (and if so, pay for it)."""
        self._refill()
        if self._tokens < 1.0:
            self.refused += 1
            return False
        self._tokens -= 1.0
        self.spent += 1
        return True

    def _refill(self) -> None:
        now = time.monotonic()
        if self._tokens < self.reserve:
            self._tokens = min(self.reserve, self._tokens + (now - self._refilled) * self.per_second)
        self._refilled = now


class AllUp:
    """The health of a group nobody watches: every replica is worth trying, none is marked."""

    def is_up(self, url: str) -> bool:
        return True

    def mark_down(self, url: str, reason: str) -> None:
        pass

    def mark_up(self, url: str) -> None:
        pass


def backoff(retry: int) -> float:
    """The pause before the `retry`-th retry (1, 2, ...): "full jitter", uniform up to a doubling cap."""
    return random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (retry - 1)))


# A replica that did not answer is tried last for this long: behind a partition every attempt costs a
# connect timeout, and the others keep naming it leader, so without this each request would pay again.
SUSPECT_SECONDS = 30.0


class GroupClient:
    def __init__(
        self,
        tiers: TierClient,
        urls: list[str],
        *,
        deadline: float = 6.0,
        health: ReplicaHealth | None = None,
        budget: RetryBudget | None = None,
    ) -> None:
        self.tiers = tiers
        self.urls = list(urls)
        self.deadline = deadline
        self.health: ReplicaHealth = health or AllUp()
        # Without a budget of the caller's, retries are bounded by the deadline alone (the order tier's
        # calls to the catalog, the operator tools).
        self.budget = budget
        self.leader: str | None = None  # learned from the X-Pygmy-Leader header of any answer
        self._turn = itertools.count()
        self._suspect: dict[str, float] = {}  # url -> until when (monotonic) it is tried last

    def order(self, prefer_leader: bool) -> list[str]:
        """Replicas in the order to try: the leader first (for writes), else a rotation (to spread reads);
        replicas marked down, then those that recently did not answer, go last (tried only when no healthy
        one could answer)."""
        start = next(self._turn) % len(self.urls)
        rotation = self.urls[start:] + self.urls[:start]
        if prefer_leader and self.leader in rotation:
            rotation.remove(self.leader)
            rotation.insert(0, self.leader)
        now = time.monotonic()
        # Stable sort: within each class the rotation's order stays.
        return sorted(rotation, key=lambda url: (not self.health.is_up(url), self._suspect.get(url, 0.0) > now))

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
        deadline: float | None = None,
        hard_deadline: bool = False,
    ) -> Reply:
        """The first definite answer (any status but 503) of a replica; TierUnavailable if none came in time.

        `deadline`: seconds within which attempts start (default: the client's), and the longest a replica
        waits for a leader. An attempt in flight runs to its `timeout` (the pool's by default: a busy but
        working tier is not cut off), unless `hard_deadline`: the caller stops listening at the deadline.
        The TierUnavailable's `sent` is False only if no attempt may have reached a replica.
        """
        end = time.monotonic() + (self.deadline if deadline is None else deadline)
        if self.budget is not None:
            self.budget.deposit()
        attempts = 0
        sent = False
        last: Exception | None = None
        while True:
            refused = 0
            for url in self.order(prefer_leader):
                if attempts and not await self._may_retry(attempts, end):
                    raise TierUnavailable(f"no retry left in time or budget after: {last}", sent=sent)
                attempts += 1
                remaining = end - time.monotonic()
                attempt_timeout = timeout
                if hard_deadline:
                    attempt_timeout = remaining if timeout is None else min(timeout, remaining)
                try:
                    reply = await self.tiers.call(method, url + path, json=json, params=params,
                                                  headers=deadline_header(remaining), timeout=attempt_timeout)
                except TierUnavailable as exc:
                    last = exc
                    ATTEMPTS.labels(url, "failed" if exc.sent else "refused").inc()
                    self._suspect[url] = time.monotonic() + SUSPECT_SECONDS
                    if self.leader == url:
                        self.leader = None
                    if not exc.sent:
                        refused += 1
                        # Nothing listens there: it has crashed or is restarting. Do not send it the next request.
                        self.health.mark_down(url, "refused a connection")
                        continue
                    sent = True
                    if not idempotent:
                        raise
                    continue
                ATTEMPTS.labels(url, "answered").inc()
                self.health.mark_up(url)
                self._suspect.pop(url, None)
                self._learn(reply)
                if reply.status != 503:
                    return reply
                last = TierUnavailable(f"{url} answered 503: {error_message(reply.body)}", sent=True)
                code = error_code(reply.body)
                if method != "GET" and code not in NOT_CARRIED_OUT:
                    sent = True  # the replica may have carried it out (or cannot say it did not)
                if not idempotent and method != "GET" and code == "outcome_unknown":
                    return reply
            if refused == len(self.urls) and not sent:
                # Every replica refused the connection: the whole group is down, not electing; say so now.
                raise TierUnavailable(f"no replica of the group accepts connections: {last}", sent=False)
            if time.monotonic() >= end:
                raise TierUnavailable(f"no replica answered: {last}", sent=sent)

    async def _may_retry(self, attempts: int, end: float) -> bool:
        """Pause before the next attempt; False when the deadline or the retry budget does not allow one."""
        if self.budget is not None and not self.budget.withdraw():
            return False
        pause = backoff(attempts)
        if time.monotonic() + pause >= end:
            return False
        await asyncio.sleep(pause)
        return True

    def _learn(self, reply: Reply) -> None:
        leader = reply.headers.get(LEADER_HEADER)
        if leader in self.urls:
            self.leader = leader


def error_code(body: Any) -> str | None:
    """The code of a `{"error": {"code", "message"}}` body, or None for any other body."""
    error = body.get("error") if isinstance(body, dict) else None
    return error.get("code") if isinstance(error, dict) else None


def error_message(body: Any) -> str:
    """The message of a `{"error": {"code", "message"}}` body, or the start of whatever came instead."""
    error = body.get("error") if isinstance(body, dict) else None
    return str(error.get("message")) if isinstance(error, dict) else str(body)[:200]
