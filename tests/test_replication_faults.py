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
from support.polling import wait_for

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
BUY_DEADLINE = 90.0  # seconds for all 500 (they take ~10): past it the store has stalled, and the test says so
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
    # Down for longer than an election plus one cache lease (a new catalog leader's first invalidating
    # write waits that long), so answers do come back while it is dead.
    killed, back = _crash_restart(cluster, kind, leader, 3.0)
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
        done, late = concurrent.futures.wait(futures, timeout=BUY_DEADLINE)
        for f in late:
            f.cancel()
        assert not late, f"{len(late)} buys had no answer {BUY_DEADLINE:.0f} s after the first (the store stalled)\n{cluster.logs()}"
        buys = [f.result() for f in futures]
    elapsed = time.monotonic() - started
    for name, killed, back in kills:
        print(f"killed {name} at +{killed - started:.2f} s, back at +{back - started:.2f} s")
    print(f"{BUYS} buys in {elapsed:.1f} s; answers:",
          dict(collections.Counter(f"{r.status} {r.code or ''}".strip() for b in buys for r in b.replies)))

    replies = [r for b in buys for r in b.replies]
    # Each kill hit the load: buys were answered while that leader was dead (the restart's timing is the
    # machine's business: on a loaded one, the load may end before the node is back).
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


# -- 2. a replica down: the store keeps selling; a leader down: how long writes pause -------------------

PAUSE_ITEMS = {1: 10_000, 2: 10_000}
PAUSE_BOUND = 10.0  # seconds: not a performance target, only proof that the group elected a new leader


def _buys_and_lookups_succeed(cluster: Cluster, count: int) -> None:
    for n in range(count):
        item = 1 + n % 2
        buy = _send("POST", f"{cluster.frontend_url}/buy/{item}")
        assert buy.status == 200, f"buy {n}: {buy}"
        assert _send("GET", f"{cluster.frontend_url}/orders/{buy.body['order_id']}").status == 200
        lookup = _send("GET", f"{cluster.frontend_url}/lookup/{item}")
        assert lookup.status == 200, f"lookup {n}: {lookup}"


def _write_pause(cluster: Cluster, kind: str) -> tuple[int, float]:
    """kill -9 the leader of `kind`, then buy until a buy succeeds: the seconds from the kill to that answer."""
    leader = leader_of(cluster, kind)
    assert _send("POST", f"{cluster.frontend_url}/buy/1").status == 200  # the frontend knows the leader
    killed = time.monotonic()
    cluster.kill(kind, leader)
    while time.monotonic() - killed < PAUSE_BOUND:
        if _send("POST", f"{cluster.frontend_url}/buy/1").status == 200:
            return leader, time.monotonic() - killed
    raise AssertionError(f"no buy succeeded within {PAUSE_BOUND} s of killing {kind}-{leader}\n{cluster.logs()}")


def test_the_store_keeps_selling_with_a_replica_of_each_group_down_and_a_leader_s_death_pauses_writes_briefly(
    make_cluster: Callable[..., Cluster], tmp_path: Path,
) -> None:
    cluster = _fault_cluster(make_cluster, tmp_path, "one-down", PAUSE_ITEMS)
    _buys_and_lookups_succeed(cluster, 3)  # the catalog is loaded
    followers = {kind: next(i for i in range(3) if i != leader_of(cluster, kind)) for kind in ("catalog", "order")}
    for kind, i in followers.items():
        cluster.kill(kind, i)
    _buys_and_lookups_succeed(cluster, 20)
    for kind, i in followers.items():
        cluster.restart(kind, i)
    for kind in ("catalog", "order"):
        wait_digests_agree(cluster, kind)
        leader, pause = _write_pause(cluster, kind)
        print(f"write pause after kill -9 of the {kind} leader ({kind}-{leader}): {pause * 1000:.0f} ms")
        _buys_and_lookups_succeed(cluster, 10)  # and with that leader still down, the store sells on
        cluster.restart(kind, leader)
    check_store(cluster)


# -- 3. a lost disk: the replica rebuilds from the group, and catches up before it votes ------------------

def test_a_catalog_replica_whose_data_dir_is_wiped_rejoins_catches_up_and_never_votes_before(
    make_cluster: Callable[..., Cluster], tmp_path: Path,
) -> None:
    cluster = _fault_cluster(make_cluster, tmp_path, "wiped", PAUSE_ITEMS)
    _buys_and_lookups_succeed(cluster, 30)  # some log to catch up on
    leader = leader_of(cluster, "catalog")
    term_before = terms(cluster, "catalog")[leader]
    wiped = next(i for i in range(3) if i != leader)
    cluster.kill("catalog", wiped)
    committed_at_wipe = status(cluster, "catalog", leader)["commit"]  # type: ignore[index]
    shutil.rmtree(cluster.node_data_dir("catalog", wiped))

    stop = threading.Event()
    buys: list[Reply] = []

    def keep_buying() -> None:
        for n in range(2000):  # bounded: the test ends it long before
            if stop.is_set():
                return
            buys.append(_send("POST", f"{cluster.frontend_url}/buy/{1 + n % 2}"))

    buyer = threading.Thread(target=keep_buying)
    buyer.start()
    try:
        cluster.restart("catalog", wiped, join=True)
        seen = _watch_until_caught_up(cluster, wiped, leader, timeout=30)
    finally:
        stop.set()
        buyer.join(30)
    roles = [sample[0] for sample in seen]
    print(f"catalog-{wiped} after the wipe: {len(seen)} status samples, roles in order: {_runs(roles)}")
    assert buys and all(b.status == 200 for b in buys), [b for b in buys if b.status != 200][:5]
    # It counts as a voter again only once its log holds every entry committed before its disk was lost
    # (all the votes and acknowledgements it forgot were about entries up to there).
    assert set(roles) <= {"catching-up", "follower"}, roles
    early = [s for s in seen if s[0] != "catching-up" and s[1] < committed_at_wipe]
    assert not early, f"it answered as a voter holding less than the {committed_at_wipe} committed entries: {early}"
    first_follower = roles.index("follower")
    assert "catching-up" not in roles[first_follower:], "it went back to catching up"
    # Nobody had an election because of it: the leader and the term are what they were.
    assert leader_of(cluster, "catalog") == leader
    assert set(terms(cluster, "catalog").values()) == {term_before}, terms(cluster, "catalog")
    assert "rejoins, catching up before it votes" in cluster.log(f"catalog-{wiped}")
    wait_digests_agree(cluster, "catalog")
    assert catalog_ledger(cluster, wiped) == catalog_ledger(cluster, leader)
    check_store(cluster)


def _watch_until_caught_up(cluster: Cluster, node_id: int, leader: int, timeout: float) -> list[tuple[str, int, int]]:
    """Samples of the rejoining replica's (role, last log index, applied index) until it is a follower
    that has applied what the leader had committed a moment before."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = status(cluster, "catalog", node_id)
        lead = status(cluster, "catalog", leader)
        if lead is None or mine is None:
            time.sleep(0.005)
            continue
        seen.append((mine["role"], mine["last_index"], mine["applied"]))
        if mine["role"] == "follower" and mine["applied"] >= lead["commit"]:
            return seen
        time.sleep(0.005)
    raise AssertionError(f"catalog-{node_id} did not catch up within {timeout} s: {seen[-5:]}\n{cluster.logs()}")


def _runs(values: list[str]) -> list[tuple[str, int]]:
    """["a", "a", "b"] -> [("a", 2), ("b", 1)]"""
    runs: list[tuple[str, int]] = []
    for v in values:
        if runs and runs[-1][0] == v:
            runs[-1] = (v, runs[-1][1] + 1)
        else:
            runs.append((v, 1))
    return runs


# -- 4. random crashes under a mixed workload: the history is linearizable --------------------------------

STORM_ITEMS = {1: 8, 2: 8, 3: 8}
STORM_SECONDS = float(os.environ.get("PYGMY_FAULT_SECONDS", "40"))
STORM_SEED = int(os.environ.get("PYGMY_FAULT_SEED") or random.SystemRandom().randrange(1 << 30))
STORM_CLIENTS = 4
STORM_OPS_PER_CLIENT = 5000  # a bound: the deadline ends the clients long before
NOT_CARRIED_OUT = "not carried out"


@dataclasses.dataclass
class StormLog:
    history: list[Operation] = dataclasses.field(default_factory=list)
    searches: list[Reply] = dataclasses.field(default_factory=list)
    outside_contract: list[tuple[Any, Reply]] = dataclasses.field(default_factory=list)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


def _storm_output(op: Any, reply: Reply) -> Any:
    """The model's output for what the client saw; NOT_CARRIED_OUT drops the op, None marks an unknown one."""
    kind = op[0]
    if reply.status == 503 and reply.code == "unavailable":
        return NOT_CARRIED_OUT  # the API promises it had no effect: as if it was never called
    if reply.status is None or (reply.status == 503 and reply.code == "outcome_unknown"):
        return None
    if kind == "buy" and reply.status in (200, 409) and (reply.status == 200 or reply.code == "out_of_stock"):
        return "ok" if reply.status == 200 else "out_of_stock"
    if kind == "lookup" and reply.status == 200:
        return reply.body["stock"]
    if kind == "restock" and reply.status == 200:
        return "done"
    if kind == "lookup" and reply.status == 503 and reply.code == "loading":
        return NOT_CARRIED_OUT
    raise ValueError(f"{op} -> {reply.status} {reply.code}")


def _storm_client(cluster: Cluster, client: int, seed: int, until: float, log: StormLog) -> None:
    rng = random.Random(seed)
    base = cluster.frontend_url
    admin = {"Authorization": f"Bearer {cluster.admin_token}"}
    for _ in range(STORM_OPS_PER_CLIENT):
        if time.monotonic() >= until:
            return
        item, roll = rng.choice(list(STORM_ITEMS)), rng.random()
        if roll < 0.15:
            reply = _send("GET", f"{base}/search/{rng.choice(['ds', 'gs'])}")
            with log.lock:
                log.searches.append(reply)
            continue
        if roll < 0.6:
            op: Any = ("buy", item)
            reply = _send("POST", f"{base}/buy/{item}")
        elif roll < 0.9:
            op = ("lookup", item)
            reply = _send("GET", f"{base}/lookup/{item}")
        else:
            n = rng.randint(1, 3)
            op = ("restock", (item, n))
            reply = _send("POST", f"{base}/admin/books/{item}", json={"stock_delta": n}, headers=admin)
        try:
            output = _storm_output(op, reply)
        except ValueError:
            with log.lock:
                log.outside_contract.append((op, reply))
            continue
        if output == NOT_CARRIED_OUT:
            continue
        unknown = output is None
        # The model answers None for a restock; "done" above only told a success from an error.
        recorded = None if op[0] == "restock" else output
        with log.lock:
            log.history.append(Operation(client, op, reply.call, None if unknown else recorded, None if unknown else reply.ret))
        time.sleep(rng.uniform(0, 0.02))


def _storm_of_crashes(cluster: Cluster, rng: random.Random, until: float) -> list[str]:
    """kill -9 and restart random replicas until `until`, never more than one of a group down at once."""
    events = []
    down: dict[str, int] = {}
    while time.monotonic() < until:
        kind = rng.choice(["catalog", "order"])
        if kind in down:
            cluster.restart(kind, down.pop(kind))
            events.append(f"+restart {kind}")
        else:
            victim = leader_of(cluster, kind) if rng.random() < 0.5 else rng.randrange(3)
            cluster.kill(kind, victim)
            down[kind] = victim
            events.append(f"kill {kind}-{victim}")
        time.sleep(rng.uniform(0.3, 2.5))
    for kind, victim in down.items():
        cluster.restart(kind, victim)
    return events


def _storm(make_cluster: Callable[..., Cluster], tmp_path: Path, seconds: float, seed: int) -> None:
    print(f"crash storm: {seconds:.0f} s, seed {seed} (replay: PYGMY_FAULT_SEED={seed} PYGMY_FAULT_SECONDS={seconds:.0f})")
    cluster = _fault_cluster(make_cluster, tmp_path, "storm", STORM_ITEMS)
    _wait_loaded(cluster)
    rng = random.Random(seed)
    log = StormLog()
    until = time.monotonic() + seconds
    clients = [threading.Thread(target=_storm_client, args=(cluster, c, rng.randrange(1 << 30), until, log))
               for c in range(STORM_CLIENTS)]
    for t in clients:
        t.start()
    try:
        events = _storm_of_crashes(cluster, rng, until)
    finally:
        for t in clients:
            t.join(REQUEST_TIMEOUT + 10)
    print(f"faults: {len(events)}: {' '.join(events)}")
    outcomes = collections.Counter(
        "unknown" if op.ret is None else f"{op.input[0]} {op.output if op.input[0] != 'lookup' else 'seen'}"
        for op in log.history
    )
    print(f"{len(log.history)} operations recorded: {dict(outcomes)}; {len(log.searches)} searches")
    assert not any(t.is_alive() for t in clients), "a client hung"
    assert not log.outside_contract, f"answers outside the contract: {log.outside_contract[:10]}"
    bad_searches = [r for r in log.searches if r.status != 200 and not (r.status == 503 and r.code in FAILURE_CODES)]
    assert not bad_searches, bad_searches[:5]
    for r in log.searches:
        if r.status == 200:
            assert {b["id"] for b in r.body["items"]} <= set(STORM_ITEMS), r.body
    assert sum(1 for e in events if e.startswith("kill")) >= 2, f"the storm killed too little: {events}"
    result = check(log.history, stock_model(STORM_ITEMS), timeout=120)
    assert result.ok is True, f"seed {seed}: {result.explanation}"
    check_store(cluster, pending_timeout=20)


def _wait_loaded(cluster: Cluster, timeout: float = 15.0) -> None:
    """Until the initial catalog is in (a fresh cluster seeds it through the log after it starts)."""
    wait_for("the catalog to load", lambda: _send("GET", f"{cluster.frontend_url}/lookup/1").status == 200, timeout, 0.05,
             details=cluster.logs)


@pytest.mark.timeout(STORM_SECONDS + 240)
def test_random_kill_9_of_replicas_under_buys_restocks_lookups_and_searches_keeps_the_history_linearizable(
    make_cluster: Callable[..., Cluster], tmp_path: Path,
) -> None:
    _storm(make_cluster, tmp_path, STORM_SECONDS, STORM_SEED)
