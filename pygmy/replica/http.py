"""How a backend replica's HTTP handlers reach the leader, and serve reads at the level the caller asks.

Any replica accepts any request. A write on a follower is forwarded to the leader (once: a forwarded
request that lands on a replica that no longer leads is answered 503 `not_leader`, and the forwarding
replica tries again when it learns the new leader), so a caller never sees an error for having asked a
follower. While the group elects a leader, requests wait (up to `LEADER_WAIT`) rather than fail.

Read levels, per request, as query parameters (docs/contracts.md):
- `consistency=linearizable` (the default): the answer reflects every write acknowledged before the read
  began. On the leader, a ReadIndex round; on a follower, it asks the leader for a confirmed index, waits
  until it has applied that far, and answers from its own state (Raft thesis §6.4).
- `consistency=stale`, optionally with `min_index=N` (this replica must have applied at least N; it waits
  up to a second) and `max_staleness=S` (it heard from the leader within S seconds): answered from this
  replica's state with no round trip. When the bound cannot be met the read falls back to linearizable,
  so asking for a cheaper read never produces an error or an answer older than the bound.
Every answer says where it was served: headers `X-Pygmy-Index` (the applied index of the state read),
`X-Pygmy-Served-By` and `X-Pygmy-Read` (the level actually used); every answer names the leader
(`X-Pygmy-Leader`, its URL) when one is known, so callers can go to it directly next time.
"""

from __future__ import annotations

import asyncio
import contextlib
import base64
import dataclasses
import math
import os
import time
from typing import Any, Awaitable, Callable

from aiohttp import web

from pygmy.common.deadline import deadline_header, wait_bound
from pygmy.common.errors import NOT_CARRIED_OUT, ApiError, bad_request, unavailable
from pygmy.common.jsonio import json_response
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.raft.node import GroupFailed
from pygmy.replica.client import error_code, error_message
from pygmy.replica.group import LEADER_WAIT, NoLeader, NotLeader, ProposalDropped, ReadTimeout, Replica
from pygmy.replica.readiness import readyz

FORWARDED = "X-Pygmy-Forwarded"
INDEX = "X-Pygmy-Index"
SERVED_BY = "X-Pygmy-Served-By"
READ_LEVEL = "X-Pygmy-Read"
LEADER = "X-Pygmy-Leader"
MIN_INDEX_WAIT = 1.0  # seconds a stale read waits for this replica to reach the caller's min_index

REPLICA = web.AppKey("replica", Replica)
TIERS = web.AppKey("replica_tiers", TierClient)


@dataclasses.dataclass(frozen=True)
class ReadLevel:
    linearizable: bool = True
    min_index: int = 0
    max_staleness: float | None = None

    @property
    def name(self) -> str:
        return "linearizable" if self.linearizable else "stale"


def parse_read_level(query: Any) -> ReadLevel:
    """The read level from a request's query parameters; 400 for a malformed one."""
    consistency = query.get("consistency", "linearizable")
    if consistency not in ("linearizable", "stale"):
        raise bad_request("consistency must be linearizable or stale", "bad_consistency")
    min_index = query.get("min_index")
    staleness = query.get("max_staleness")
    if consistency == "linearizable":
        if min_index is not None or staleness is not None:
            raise bad_request("min_index and max_staleness go with consistency=stale", "bad_consistency")
        return ReadLevel()
    try:
        index = int(min_index) if min_index is not None else 0
        bound = float(staleness) if staleness is not None else None
    except ValueError:
        raise bad_request("min_index must be an integer and max_staleness a number of seconds", "bad_consistency") from None
    if index < 0 or (bound is not None and (not math.isfinite(bound) or bound <= 0)):
        raise bad_request("min_index must be >= 0 and max_staleness > 0", "bad_consistency")
    return ReadLevel(linearizable=False, min_index=index, max_staleness=bound)


def run_replica(
    app: web.Application, replica: Replica, tiers: TierClient, background: Callable[[], Awaitable[None]]
) -> None:
    """Start the replica with the app, run `background` (the seeder, the settler) beside it, and on
    shutdown stop that, then the replica (a leader hands over first), then the HTTP client pool."""

    async def lifecycle(_: web.Application):  # type: ignore[no-untyped-def]
        await replica.start()
        task = asyncio.create_task(background())
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await replica.stop()
        await tiers.close()

    app.cleanup_ctx.append(lifecycle)


@web.middleware
async def group_failed_middleware(request: web.Request, handler: Any) -> web.StreamResponse:
    """A replica whose group fail-stopped (GroupFailed) answers 503: a write may have reached the log."""
    try:
        return await handler(request)
    except GroupFailed:
        code = "outcome_unknown" if request.method == "POST" else "unavailable"
        raise unavailable(f"{request.app[REPLICA].node.name} has stopped serving its group; ask another replica",
                          code=code) from None


def add_replica_routes(app: web.Application, replica: Replica, tiers: TierClient) -> None:
    app.middlewares.append(group_failed_middleware)  # innermost: the error middleware renders its 503
    app[REPLICA] = replica
    app[TIERS] = tiers
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/internal/status", status_route)
    app.router.add_get("/internal/read-index", read_index_route)
    app.router.add_post("/internal/digest", digest_route)
    app.router.add_get("/internal/digest/{id}", digest_result_route)
    app.router.add_get("/internal/dump", dump_route)
    app.router.add_post("/internal/transfer", transfer_route)


# -- answers ------------------------------------------------------------------------------------------


def answer(request: web.Request, body: Any, *, index: int | None = None, level: str | None = None) -> web.Response:
    response = json_response(body)
    replica = request.app[REPLICA]
    response.headers[SERVED_BY] = replica.node.name
    if index is not None:
        response.headers[INDEX] = str(index)
    if level is not None:
        response.headers[READ_LEVEL] = level
    leader = replica.leader_url()
    if leader is not None:
        response.headers[LEADER] = leader
    return response


def _relay(request: web.Request, status: int, body: Any, headers: dict[str, str]) -> web.Response:
    response = json_response(body, status=status)
    for name in (INDEX, SERVED_BY, READ_LEVEL, "Retry-After"):
        if name in headers:
            response.headers[name] = headers[name]
    leader = request.app[REPLICA].leader_url()
    if leader is not None:
        response.headers[LEADER] = leader
    return response


# -- writes ------------------------------------------------------------------------------------------


async def on_leader(
    request: web.Request,
    run: Callable[[], Awaitable[web.Response]],
    *,
    idempotent: bool,
) -> web.Response:
    """Run `run` here if this replica leads, else forward the request to the leader; wait out elections.

    `idempotent`: the request may be sent again after an unknown outcome (it carries its own request id or
    idempotency key); otherwise an unknown outcome is answered 503 `outcome_unknown`. A 503 that promises
    "not carried out" (errors.NOT_CARRIED_OUT) is only given when no earlier try of this request may have
    taken effect; after one that may have, the answer is `outcome_unknown`.
    """
    tries = _Tries()
    try:
        return await _lead_or_forward(request, run, idempotent, tries)
    except ApiError as exc:
        if tries.maybe_took_effect and request.method != "GET" and exc.status == 503 and exc.code in NOT_CARRIED_OUT:
            raise unavailable(f"{exc.message}; an earlier try may have been carried out", code="outcome_unknown") from None
        raise


@dataclasses.dataclass
class _Tries:
    """Whether a try of this request (a proposal here, or a forward the leader may have received) may have
    taken effect, so that a later "no leader" cannot be passed off as "not carried out"."""

    maybe_took_effect: bool = False


async def _lead_or_forward(
    request: web.Request, run: Callable[[], Awaitable[web.Response]], idempotent: bool, tries: _Tries
) -> web.Response:
    replica = request.app[REPLICA]
    # Never wait for a leader longer than the caller waits for us (its deadline header).
    deadline = time.monotonic() + wait_bound(request.headers, LEADER_WAIT)
    body = await request.read()
    while True:
        remaining = deadline - time.monotonic()
        try:
            if replica.is_leader():
                return await run()
            if FORWARDED in request.headers:
                raise ApiError(503, "not_leader", f"{replica.node.name} does not lead the {replica.node.kind} group")
            leader = await replica.wait_for_leader(max(remaining, 0.0))
            if leader != replica.node.id:
                forwarded = await _forward(request, replica.urls[leader], body, deadline, idempotent, tries)
                if forwarded is not None:
                    return forwarded
        except (NotLeader, ReadTimeout):
            # Lost leadership between the check and the proposal: nothing was appended (a buy that loses
            # its leader after its `begin` raises ProposalDropped, not NotLeader). Go to the new leader.
            pass
        except NoLeader as exc:
            raise unavailable(f"{exc}; retry shortly") from None
        except ProposalDropped:
            tries.maybe_took_effect = True
            if not idempotent:
                raise unavailable(
                    "the leader changed while the write was in flight; it may or may not have been applied",
                    code="outcome_unknown",
                ) from None
        if time.monotonic() >= deadline:
            raise unavailable(f"the {replica.node.kind} group has no reachable leader; retry shortly")
        await asyncio.sleep(0.02)


async def _forward(
    request: web.Request, leader_url: str, body: bytes, deadline: float, idempotent: bool, tries: _Tries
) -> web.Response | None:
    """The leader's answer relayed, or None when the caller should look for the leader again."""
    tiers = request.app[TIERS]
    headers = {FORWARDED: "1", **deadline_header(deadline - time.monotonic())}
    try:
        reply = await tiers.call(request.method, leader_url + request.path_qs, raw=body or None, headers=headers)
    except TierUnavailable as exc:
        if exc.sent:
            tries.maybe_took_effect = True
            if not idempotent and request.method == "POST":
                raise unavailable(
                    "the leader stopped answering; the write may or may not have been applied",
                    code="outcome_unknown",
                ) from None
        return None  # the leader is gone (or its answer is): find the next one
    code = error_code(reply.body)
    if reply.status == 503 and code == "not_leader":
        return None  # it had not led (nor tried) this request: it says outcome_unknown when it had
    if reply.status == 503 and code == "outcome_unknown" and idempotent:
        tries.maybe_took_effect = True
        return None  # safe to send again: look for the next leader while the deadline allows
    if reply.status == 503 and code in NOT_CARRIED_OUT:
        # Raised rather than relayed, so that on_leader can weigh it against this replica's earlier tries.
        raise ApiError(503, str(code), error_message(reply.body), headers={"Retry-After": reply.headers.get("Retry-After", "1")})
    return _relay(request, reply.status, reply.body, reply.headers)


# -- reads -------------------------------------------------------------------------------------------


async def read(request: web.Request, query: dict[str, Any], level: ReadLevel | None = None) -> tuple[dict[str, Any], str]:
    """The state machine's answer to `query` at the request's read level, and the level used."""
    replica = request.app[REPLICA]
    level = level or parse_read_level(request.query)
    if not level.linearizable and await _stale_allowed(replica, level):
        return replica.read_local(query), "stale"
    return await _read_linearizable(request, replica, query), "linearizable"


async def _stale_allowed(replica: Replica, level: ReadLevel) -> bool:
    if replica.group.failure is not None:
        return False
    if level.min_index and not await replica.wait_applied(level.min_index, MIN_INDEX_WAIT):
        return False
    if level.max_staleness is not None:
        contact = replica.group.last_contact()
        return contact is not None and contact <= level.max_staleness
    return True


async def _read_linearizable(request: web.Request, replica: Replica, query: dict[str, Any]) -> dict[str, Any]:
    deadline = time.monotonic() + wait_bound(request.headers, LEADER_WAIT)
    while True:
        try:
            if replica.is_leader():
                return await replica.read_linearizable(query)
            leader = await replica.wait_for_leader(max(deadline - time.monotonic(), 0.0))
            if leader != replica.node.id:
                index = await _leader_read_index(request, replica.urls[leader])
                if index is not None and await replica.wait_applied(index, max(deadline - time.monotonic(), 0.0)):
                    return replica.read_local(query)
        except (NotLeader, ReadTimeout):
            pass
        except NoLeader as exc:
            raise unavailable(f"{exc}; retry shortly") from None
        if time.monotonic() >= deadline:
            raise unavailable(f"the {replica.node.kind} group cannot confirm a read right now; retry shortly")
        await asyncio.sleep(0.02)


async def _leader_read_index(request: web.Request, leader_url: str) -> int | None:
    try:
        reply = await request.app[TIERS].call("GET", leader_url + "/internal/read-index", headers={FORWARDED: "1"})
    except TierUnavailable:
        return None
    if reply.status != 200 or not isinstance(reply.body, dict):
        return None
    index = reply.body.get("index")
    return index if isinstance(index, int) else None


async def read_index_route(request: web.Request) -> web.Response:
    """On the leader: an index that holds every write acknowledged so far (a confirmed ReadIndex)."""
    replica = request.app[REPLICA]
    if not replica.is_leader():
        raise ApiError(503, "not_leader", f"{replica.node.name} does not lead the {replica.node.kind} group")
    try:
        result = await replica.read_linearizable({"op": "index"})
    except (NotLeader, ReadTimeout):
        raise ApiError(503, "not_leader", f"{replica.node.name} could not confirm its leadership") from None
    return answer(request, {"index": result["index"]}, index=result["index"])


# -- operator routes ---------------------------------------------------------------------------------


async def status_route(request: web.Request) -> web.Response:
    restarts = int(os.environ.get("PYGMY_RESTARTS", "0") or 0)
    return answer(request, request.app[REPLICA].status_document(restarts))


async def transfer_route(request: web.Request) -> web.Response:
    """On the leader: hand leadership to a follower (the control endpoint's transfer); 409 elsewhere."""
    replica = request.app[REPLICA]
    if not replica.is_leader():
        raise ApiError(409, "not_leader", f"{replica.node.name} does not lead the {replica.node.kind} group")
    successor = await replica.hand_over()
    return answer(request, {"from": replica.node.name, "to": successor})


async def digest_route(request: web.Request) -> web.Response:
    """Through the log: every replica hashes its state at this position, under a fresh id."""
    digest_id = os.urandom(8).hex()

    async def run() -> web.Response:
        result = await request.app[REPLICA].propose({"op": "digest", "id": digest_id})
        return answer(request, result)

    return await on_leader(request, run, idempotent=True)


async def digest_result_route(request: web.Request) -> web.Response:
    """This replica's hash at a digest's position (waits up to 3 s for it to apply that far); 404 if absent."""
    replica = request.app[REPLICA]
    digest_id = request.match_info["id"]
    deadline = time.monotonic() + 3.0
    while True:
        result = replica.read_local({"op": "digest", "id": digest_id})
        if result.get("found") or time.monotonic() >= deadline:
            break
        await asyncio.sleep(0.02)
    if not result.get("found"):
        raise ApiError(404, "unknown_digest", f"{replica.node.name} holds no digest {digest_id!r}")
    return answer(request, {"id": digest_id, "hash": result["hash"], "summary": result["summary"]}, index=result["index"])


async def dump_route(request: web.Request) -> web.Response:
    """On the leader, after a ReadIndex: the state machine's `snapshot()` (without the session table) at a
    committed index that holds every write acknowledged before the request (`pygmy backup`)."""
    replica = request.app[REPLICA]

    async def run() -> web.Response:
        try:
            await replica.read_linearizable({"op": "index"})
        except ReadTimeout:
            raise unavailable(f"{replica.node.name} could not confirm its leadership; retry shortly") from None
        index, summary, data = await asyncio.to_thread(replica.machine.committed_dump)  # type: ignore[attr-defined]
        body = {"kind": replica.node.kind, "index": index, "summary": summary, "data": base64.b64encode(data).decode()}
        return answer(request, body, index=index)

    return await on_leader(request, run, idempotent=True)
