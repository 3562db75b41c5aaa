"""What must hold of a live cluster after any faults, read from its replicas' internal routes.

- Every replica of a group holds the same state at the same log position (the digest: POST
  /internal/digest puts a digest command in the log, every replica hashes its state when it applies it).
- Per book on every catalog replica: stock >= 0 and initial + restocked - sold == stock.
- Per item: copies sold at the catalog == done orders at the order group (no copy given out without an
  order, no order without a copy), and no order stays pending once the settler has had its turn.
Reads of a single replica use `consistency=stale` (that replica's own state, no round trip): after the
digests agree, every replica has applied at least as far as the digest's position.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import requests

from support.cluster import Cluster

STATUS_TIMEOUT = 1.0


@dataclass(frozen=True)
class LedgerRow:
    item: int
    stock: int
    initial: int
    restocked: int
    sold: int


def status(cluster: Cluster, kind: str, node_id: int) -> dict[str, Any] | None:
    """The replica's /internal/status document, or None if it does not answer."""
    try:
        r = requests.get(cluster.url(kind, node_id) + "/internal/status", headers=cluster.secret_headers(),
                         timeout=STATUS_TIMEOUT)
    except requests.RequestException:
        return None
    return r.json() if r.status_code == 200 else None


def leader_of(cluster: Cluster, kind: str, timeout: float = 15.0) -> int:
    """The id of the replica that says it leads `kind` (the highest term wins, if two still think so)."""
    deadline = time.monotonic() + timeout
    while True:
        leaders = []
        for i in range(3):
            s = status(cluster, kind, i)
            if s is not None and s["role"] == "leader":
                leaders.append((s["term"], i))
        if leaders:
            return max(leaders)[1]
        if time.monotonic() > deadline:
            raise TimeoutError(f"the {kind} group elected no leader within {timeout} s\n{cluster.logs()}")
        time.sleep(0.05)


def terms(cluster: Cluster, kind: str) -> dict[int, int]:
    """Each answering replica's current term."""
    found = {}
    for i in range(3):
        s = status(cluster, kind, i)
        if s is not None:
            found[i] = int(s["term"])
    return found


def digests(cluster: Cluster, kind: str, replicas: list[int]) -> dict[int, str | None]:
    """One digest through the log; each replica's hash at that position (None: it has not reached it)."""
    r = requests.post(cluster.url(kind, replicas[0]) + "/internal/digest", headers=cluster.secret_headers(), timeout=10)
    assert r.status_code == 200, f"digest of {kind}: {r.status_code} {r.text[:300]}"
    digest_id = r.json()["id"]
    hashes: dict[int, str | None] = {}
    for i in replicas:
        try:
            reply = requests.get(f"{cluster.url(kind, i)}/internal/digest/{digest_id}",
                                 headers=cluster.secret_headers(), timeout=10)
        except requests.RequestException:
            hashes[i] = None
            continue
        hashes[i] = reply.json()["hash"] if reply.status_code == 200 else None
    return hashes


def wait_digests_agree(cluster: Cluster, kind: str, replicas: list[int] | None = None, timeout: float = 30.0) -> str:
    """Until every replica in `replicas` (default: all three) hashes the same state at one log position."""
    replicas = replicas if replicas is not None else [0, 1, 2]
    deadline = time.monotonic() + timeout
    while True:
        try:
            hashes = digests(cluster, kind, replicas)
        except (requests.RequestException, AssertionError) as exc:
            hashes = {-1: repr(exc)}
        values = set(hashes.values())
        if len(values) == 1 and None not in values and -1 not in hashes:
            return values.pop()  # type: ignore[return-value]
        if time.monotonic() > deadline:
            raise AssertionError(f"{kind} replicas disagree (or lag) at one log position: {hashes}\n{cluster.logs()}")
        time.sleep(0.3)


def catalog_ledger(cluster: Cluster, node_id: int) -> dict[int, LedgerRow]:
    """One catalog replica's own ledger (a stale read: its state as applied, no round trip)."""
    r = requests.get(cluster.url("catalog", node_id) + "/internal/ledger", headers=cluster.secret_headers(),
                     params={"consistency": "stale", "limit": "100000"}, timeout=10)
    assert r.status_code == 200, f"catalog-{node_id} ledger: {r.status_code} {r.text[:300]}"
    return {row[0]: LedgerRow(*row) for row in r.json()["books"]}


def order_ledger(cluster: Cluster, node_id: int | None = None) -> dict[str, Any]:
    """Done orders per item and the pending count: linearizable from whichever replica answers (None),
    or stale from replica `node_id` (its own state)."""
    params = {"consistency": "stale"} if node_id is not None else {}
    last = ""
    for i in [node_id] if node_id is not None else [0, 1, 2]:
        try:
            r = requests.get(cluster.url("order", i) + "/internal/ledger", headers=cluster.secret_headers(),
                             params=params, timeout=10)
        except requests.RequestException as exc:
            last = repr(exc)
            continue
        if r.status_code == 200:
            body = r.json()
            return {"done_by_item": {int(k): v for k, v in body["done_by_item"].items()}, "pending": body["pending"]}
        last = f"{r.status_code} {r.text[:300]}"
    raise AssertionError(f"no order replica gave its ledger: {last}")


def wait_nothing_pending(cluster: Cluster, timeout: float = 15.0) -> dict[str, Any]:
    """Until the order group's leader has settled every pending order (its settler sweeps every second)."""
    deadline = time.monotonic() + timeout
    while True:
        ledger = order_ledger(cluster)
        if ledger["pending"] == 0:
            return ledger
        if time.monotonic() > deadline:
            raise AssertionError(f"{ledger['pending']} orders still pending {timeout} s after the faults\n{cluster.logs()}")
        time.sleep(0.2)


def check_store(cluster: Cluster, *, pending_timeout: float = 15.0) -> dict[int, LedgerRow]:
    """Every invariant of the module docstring, on all three replicas of each group; the catalog ledger."""
    done = wait_nothing_pending(cluster, pending_timeout)["done_by_item"]
    wait_digests_agree(cluster, "order")
    wait_digests_agree(cluster, "catalog")
    ledgers = {i: catalog_ledger(cluster, i) for i in range(3)}
    for i, ledger in ledgers.items():
        assert ledger == ledgers[0], f"catalog-{i}'s ledger differs from catalog-0's after the digests agreed"
        for row in ledger.values():
            assert row.stock >= 0, f"catalog-{i}: item {row.item} oversold: {row}"
            assert row.initial + row.restocked - row.sold == row.stock, f"catalog-{i}: ledger does not add up: {row}"
    for i in range(3):
        assert order_ledger(cluster, i)["done_by_item"] == done, f"order-{i} counts other done orders"
    for row in ledgers[0].values():
        assert row.sold == done.get(row.item, 0), (
            f"item {row.item}: the catalog gave out {row.sold} copies but {done.get(row.item, 0)} orders are done"
        )
    return ledgers[0]
