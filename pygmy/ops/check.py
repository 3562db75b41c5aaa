"""`pygmy check`: do the replicas agree, and do the books balance against the orders?

Two checks, both against the replicas directly (`pygmy.ops.nodes`):

1. Digests. A `digest` command goes through each group's log; every replica hashes its state when it
   applies it, so all hashes are of the same log position and must be equal, even while writes go on. The
   hash held by a majority is the group's; a replica with another hash has diverged (a failure, named, with
   both summaries). A replica that does not answer is reported and not counted, as long as a majority
   agrees; fewer than a majority agreeing is a failure.
2. The ledger. Once no order is pending, every catalog replica's books must satisfy, book by book,
   `initial + restocked - sold == stock` and `sold == done orders of that item` (from the order group),
   and every order replica's ledger must equal the order group's. Each replica is read with a
   linearizable read served from its own state, so a wrong replica is named. The order ledger is read
   before and after the catalog's; if it moved (a buy happened meanwhile) the pass is repeated.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from typing import Any, Callable, Literal

from pygmy.common.tier_client import TierUnavailable
from pygmy.config import Node, NodeKind
from pygmy.ops.nodes import GROUPS, Backends, OpsError
from pygmy.replica.client import error_message

Level = Literal["ok", "warn", "fail"]
Progress = Callable[[str, int, int], None]  # (what, done, total)
LEDGER_PAGE = 10_000
PENDING_WAIT = 10.0
LEDGER_PASSES = 3
MAX_LISTED = 20  # differences listed per replica; the rest are counted


@dataclasses.dataclass(frozen=True)
class Finding:
    check: str  # "digest", "ledger", "orders"
    where: str  # a group or a replica name
    level: Level
    detail: str


@dataclasses.dataclass
class Report:
    findings: list[Finding] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "fail" for f in self.findings)

    def add(self, check: str, where: str, level: Level, detail: str) -> None:
        self.findings.append(Finding(check, where, level, detail))


async def run_check(backends: Backends, progress: Progress = lambda what, done, total: None) -> Report:
    report = Report()
    for kind in GROUPS:
        await compare_digests(backends, kind, report)
    await check_ledgers(backends, report, progress)
    return report


# -- digests ---------------------------------------------------------------------------------------


async def compare_digests(backends: Backends, kind: NodeKind, report: Report) -> None:
    try:
        _, body = await backends.first(kind, "POST", "/internal/digest")
    except OpsError as exc:
        report.add("digest", kind, "fail", str(exc))
        return
    digest_id = str(body["id"])
    replicas = backends.replicas(kind)
    answers = await asyncio.gather(*(_digest_of(backends, node, digest_id) for node in replicas))
    held = {node.name: a for node, a in zip(replicas, answers) if isinstance(a, dict)}
    votes = Counter(a["hash"] for a in held.values())
    majority = len(replicas) // 2 + 1
    agreed, count = votes.most_common(1)[0] if votes else (None, 0)
    if count < majority:
        report.add("digest", kind, "fail",
                   f"no majority: {count} of {len(replicas)} replicas hold the same state at digest {digest_id}")
        agreed = None  # no state to call the group's: list every hash
    reference = next((a for a in held.values() if a["hash"] == agreed), None)
    for node, a in zip(replicas, answers):
        if isinstance(a, str):
            report.add("digest", node.name, "warn", f"not compared: {a}")
        elif agreed is None:
            report.add("digest", node.name, "fail", f"hash {a['hash'][:12]}, summary {a['summary']}")
        elif a["hash"] == agreed:
            report.add("digest", node.name, "ok", f"hash {agreed[:12]} (as {count} of {len(replicas)}), {a['summary']}")
        else:
            assert reference is not None
            report.add("digest", node.name, "fail",
                       f"diverged: hash {a['hash'][:12]} where the majority has {agreed[:12]}; "
                       f"its summary {a['summary']}, the majority's {reference['summary']}")


async def _digest_of(backends: Backends, node: Node, digest_id: str) -> dict[str, Any] | str:
    """The replica's {hash, summary} at the digest, or why there is none (down, behind)."""
    try:
        reply = await backends.call(node, "GET", f"/internal/digest/{digest_id}", timeout=6.0)
    except TierUnavailable:
        return "down (no answer)"
    if reply.status == 404:
        return "has not applied the digest's log position within 3 s (behind or catching up)"
    if reply.status != 200:
        return f"answered {reply.status}: {error_message(reply.body)}"
    return {"hash": str(reply.body["hash"]), "summary": reply.body.get("summary", {})}


# -- the ledger ------------------------------------------------------------------------------------


async def check_ledgers(backends: Backends, report: Report, progress: Progress) -> None:
    try:
        for _ in range(LEDGER_PASSES):
            before = await wait_no_pending(backends)
            catalog = {n.name: await _catalog_ledger(backends, n, progress) for n in backends.replicas("catalog")}
            _, after = await backends.first("order", "GET", "/internal/ledger")
            if after == before:
                break
        else:
            report.add("ledger", "cluster", "fail",
                       f"orders kept changing during {LEDGER_PASSES} passes; run check when the cluster is quieter")
            return
    except OpsError as exc:
        report.add("ledger", "cluster", "fail", str(exc))
        return
    done = {int(item): n for item, n in before["done_by_item"].items()}
    for name, books in catalog.items():
        if books is None:
            report.add("ledger", name, "warn", "not checked: down or cannot confirm a read")
        else:
            _check_books(name, books, done, report)
    await _check_order_replicas(backends, before, report)


async def wait_no_pending(backends: Backends, timeout: float = PENDING_WAIT) -> dict[str, Any]:
    """The order group's ledger once no order is pending (an order in flight has not settled its copy yet)."""
    end = time.monotonic() + timeout
    while True:
        _, ledger = await backends.first("order", "GET", "/internal/ledger")
        if ledger["pending"] == 0:
            return dict(ledger)
        if time.monotonic() >= end:
            raise OpsError(f"{ledger['pending']} orders were still pending after {timeout:g} s")
        await asyncio.sleep(0.2)


async def _catalog_ledger(backends: Backends, node: Node, progress: Progress) -> list[list[int]] | None:
    """Every book of one replica, page by page ([id, stock, initial, restocked, sold]); None if it is down."""
    books: list[list[int]] = []
    total = None
    while total is None or len(books) < total:
        params = {"offset": str(len(books)), "limit": str(LEDGER_PAGE)}
        try:
            reply = await backends.call(node, "GET", "/internal/ledger", params=params, timeout=30.0)
        except TierUnavailable:
            return None
        if reply.status != 200:
            return None
        total = int(reply.body["total"])
        page = reply.body["books"]
        books += page
        progress(f"ledger of {node.name}", len(books), total)
        if not page:
            break
    return books


def _check_books(name: str, books: list[list[int]], done: dict[int, int], report: Report) -> None:
    problems: list[str] = []
    seen: set[int] = set()
    for item, stock, initial, restocked, sold in books:
        seen.add(item)
        expected = initial + restocked - sold
        if stock != expected:
            problems.append(f"item {item}: stock expected {expected} (initial {initial} + restocked {restocked} "
                            f"- sold {sold}), found {stock}")
        if sold != done.get(item, 0):
            problems.append(f"item {item}: sold expected {done.get(item, 0)} (done orders), found {sold}")
    for item in sorted(set(done) - seen):
        problems.append(f"item {item}: {done[item]} done orders, but the replica has no such book")
    if not problems:
        report.add("ledger", name, "ok", f"{len(books)} books balance: stock = initial + restocked - sold, "
                                         f"sold = done orders")
        return
    for line in problems[:MAX_LISTED]:
        report.add("ledger", name, "fail", line)
    if len(problems) > MAX_LISTED:
        report.add("ledger", name, "fail", f"... and {len(problems) - MAX_LISTED} more differences")


async def _check_order_replicas(backends: Backends, group: dict[str, Any], report: Report) -> None:
    done = sum(group["done_by_item"].values())
    for node in backends.replicas("order"):
        try:
            reply = await backends.call(node, "GET", "/internal/ledger")
        except TierUnavailable:
            report.add("orders", node.name, "warn", "not checked: down")
            continue
        if reply.status != 200:
            report.add("orders", node.name, "warn", f"not checked: {error_message(reply.body)}")
        elif reply.body == group:
            report.add("orders", node.name, "ok", f"{done} done orders, none pending, as the group")
        else:
            report.add("orders", node.name, "fail", f"ledger {reply.body} where the group has {group}")
