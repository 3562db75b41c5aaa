"""The replicated store under crashes: kill -9 of leaders and followers, a lost disk, random crash storms.

Real processes on loopback (3 catalog, 3 order, 1 frontend, `pygmy serve`), real kill -9. After every fault
the invariants of `support.invariants` hold on every replica: no item oversold, every copy sold belongs to
exactly one done order, every replica of a group holds the same state at the same log position, nothing
stays pending. What clients saw holds too: a 200 names an order that exists, a failure is a 503
`unavailable` / `outcome_unknown` (or a 409 `out_of_stock`), never a 500, and a retry under the same
Idempotency-Key never buys twice.

The randomized test runs for `PYGMY_FAULT_SECONDS` (default 40) from seed `PYGMY_FAULT_SEED` (default: a
fresh one, printed); `-m long` runs it for 300 s more.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import os
import random
import shutil
import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from pygmy.checker.linearizability import Operation, check, stock_model
from support.catalogs import book, write_json_catalog
from support.cluster import Cluster
from support.invariants import catalog_ledger, check_store, leader_of, status, terms, wait_digests_agree

REQUEST_TIMEOUT = 20.0  # a frontend answers within its backends' deadlines (~6 s each); this is only a backstop
FAILURE_CODES = {"unavailable", "outcome_unknown"}

_local = threading.local()


def _session() -> requests.Session:
    """One keep-alive session per client thread (requests.Session is not thread-safe)."""
    if not hasattr(_local, "session"):
        _local.session = requests.Session()
    return _local.session  # type: ignore[no-any-return]


@dataclasses.dataclass
class Reply:
    """What a client saw of one HTTP call: status and error code (or order id), and when."""

    call: float
    ret: float
    status: int | None  # None: the connection failed or timed out (the frontend never dies here)
    code: str | None = None
    body: Any = None


def _send(method: str, url: str, **kwargs: Any) -> Reply:
    call = time.monotonic()
    try:
        r = _session().request(method, url, timeout=REQUEST_TIMEOUT, **kwargs)
    except requests.RequestException as exc:
        return Reply(call, time.monotonic(), None, type(exc).__name__)
    try:
        body = r.json()
    except ValueError:
        body = r.text
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return Reply(call, time.monotonic(), r.status_code, code, body)


def _acceptable_failure(reply: Reply) -> bool:
    return (reply.status == 503 and reply.code in FAILURE_CODES) or (reply.status == 409 and reply.code == "out_of_stock")


def _small_catalog(path: Path, items: dict[int, int]) -> Path:
    return write_json_catalog(path, [book(i, f"Fault volume {i}", "ds" if i % 2 else "gs", stock, 10.0 + i)
                                     for i, stock in items.items()])


def _fault_cluster(make_cluster: Callable[..., Cluster], tmp_path: Path, name: str, items: dict[int, int]) -> Cluster:
    return make_cluster(name, catalog_file=_small_catalog(tmp_path / f"{name}-catalog.json", items))


def _crash_restart(cluster: Cluster, kind: str, node_id: int, down: float) -> tuple[float, float]:
    """kill -9 `kind`-`node_id`, wait `down` seconds, start it again; the times it died and answered again."""
    killed = time.monotonic()
    cluster.kill(kind, node_id)
    time.sleep(down)
    cluster.restart(kind, node_id)
    return killed, time.monotonic()


# -- 1. concurrent buys while the leaders die -------------------------------------------------------------

BUY_ITEMS = {1: 60, 2: 60, 3: 60, 4: 60, 5: 60}
BUYS = 500
BUY_WORKERS = 16
KEYED_EVERY = 4  # every 4th buy carries the client's own Idempotency-Key and is retried under it
KEYED_RETRIES = 10
THINK = 0.25  # a client's mean pause between buys: 16 of them spread 500 buys over ~10 s, long enough for both kills


@dataclasses.dataclass
class Buy:
    item: int
    key: str | None
    replies: list[Reply]

    @property
    def final(self) -> Reply:
        return self.replies[-1]

    def order_ids(self) -> set[int]:
        return {r.body["order_id"] for r in self.replies if r.status == 200}


def _buy(frontend: str, item: int, key: str | None) -> Buy:
    """One client's buy. A keyed client retries under its key until it gets a definite answer, and then
    sends the key once more (as a client that lost the answer would): it must get the same order back."""
    headers = {"Idempotency-Key": key} if key else {}
    attempt = Buy(item, key, [_send("POST", f"{frontend}/buy/{item}", headers=headers)])
    if key is None:
        return attempt
    for _ in range(KEYED_RETRIES):
        if attempt.final.status in (200, 409):
            break
        time.sleep(0.2)
        attempt.replies.append(_send("POST", f"{frontend}/buy/{item}", headers=headers))
    if attempt.final.status == 200:
        attempt.replies.append(_send("POST", f"{frontend}/buy/{item}", headers=headers))
    return attempt


def _kill_leader_when(cluster: Cluster, kind: str, done: Callable[[], int], after: int) -> tuple[str, float, float]:
    """Once `after` buys have answered, kill -9 the leader of `kind` and restart it a second later."""
    deadline = time.monotonic() + 60
    while done() < after and time.monotonic() < deadline:
        time.sleep(0.01)
    leader = leader_of(cluster, kind)
    killed, back = _crash_restart(cluster, kind, leader, 1.0)
    return f"{kind}-{leader}", killed, back


def test_500_concurrent_buys_survive_kill_9_of_the_catalog_leader_then_the_order_leader(
    make_cluster: Callable[..., Cluster], tmp_path: Path,
) -> None:
    cluster = _fault_cluster(make_cluster, tmp_path, "buys-under-kills", BUY_ITEMS)
    rng = random.Random(7)
    plan = [(rng.choice(list(BUY_ITEMS)), f"client-{n}" if n % KEYED_EVERY == 0 else None) for n in range(BUYS)]
    answered = [0]
    lock = threading.Lock()

    def one(item: int, key: str | None, pause: float) -> Buy:
        time.sleep(pause)
        result = _buy(cluster.frontend_url, item, key)
        with lock:
            answered[0] += 1
        return result

    started = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(BUY_WORKERS) as pool:
        futures = [pool.submit(one, item, key, rng.uniform(0, 2 * THINK)) for item, key in plan]
        kills = [
            _kill_leader_when(cluster, "catalog", lambda: answered[0], 80),
            _kill_leader_when(cluster, "order", lambda: answered[0], 250),
        ]
        buys = [f.result(timeout=300) for f in futures]
    elapsed = time.monotonic() - started
    for name, killed, back in kills:
        print(f"killed {name} at +{killed - started:.2f} s, back at +{back - started:.2f} s")
    print(f"{BUYS} buys in {elapsed:.1f} s; answers:",
          dict(collections.Counter(f"{r.status} {r.code or ''}".strip() for b in buys for r in b.replies)))

    replies = [r for b in buys for r in b.replies]
    last_answer = max(r.ret for r in replies)
    assert all(last_answer > back for _, _, back in kills), "the buys ended before a restart: the kills hit no load"
    for name, killed, back in kills:
        assert any(killed < r.ret < back for r in replies), f"no buy was answered while {name} was down"
    bad = [(b.item, b.key, r) for b in buys for r in b.replies if r.status != 200 and not _acceptable_failure(r)]
    assert not bad, f"answers outside the contract: {bad[:10]}"

    # Same key, same order: a retry never opened a second one.
    for b in buys:
        if b.key is not None:
            assert len(b.order_ids()) <= 1, f"{b.key} bought twice: orders {b.order_ids()}"
            assert b.final.status in (200, 409), f"{b.key} never got a definite answer: {b.replies}"
    acknowledged = {oid: b.item for b in buys for oid in b.order_ids()}
    assert len(acknowledged) == sum(1 for b in buys if b.order_ids()), "two buys were answered with one order id"
    assert any(b.final.status == 409 for b in buys), "nothing sold out, so overselling was never at stake"

    ledger = check_store(cluster)
    _assert_orders_exist(cluster, acknowledged)
    # Every done order was acknowledged, or its buy ended without a definite answer (then it may have happened).
    done = sum(row.sold for row in ledger.values())
    unknown = sum(1 for b in buys if b.final.status == 503 and b.final.code == "outcome_unknown")
    assert len(acknowledged) <= done <= len(acknowledged) + unknown, (
        f"{done} orders done, {len(acknowledged)} acknowledged, {unknown} with an unknown outcome"
    )
    for item, stock in BUY_ITEMS.items():
        assert ledger[item].initial == stock


def _assert_orders_exist(cluster: Cluster, acknowledged: dict[int, int]) -> None:
    """Every acknowledged order is there, for the right item (no acknowledged order was lost)."""
    def fetch(order_id: int) -> Reply:
        return _send("GET", f"{cluster.frontend_url}/orders/{order_id}")

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        found = dict(zip(acknowledged, pool.map(fetch, acknowledged)))
    for order_id, reply in found.items():
        assert reply.status == 200, f"acknowledged order {order_id} is gone: {reply}"
        assert reply.body["item"] == acknowledged[order_id], f"order {order_id} is for another item: {reply.body}"
