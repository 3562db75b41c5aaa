"""Operator tools on real clusters: `pygmy status` shows each group's leader, `pygmy check` passes on a healthy
cluster and names the replica and the book after a planted divergence, and `pygmy backup` / `pygmy restore`
make a new cluster holding the same books and orders."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any, Callable

import pytest
import requests

from support.cli import failed_cleanly, run_pygmy, succeeded
from support.cluster import Cluster
from support.http import Api
from support.polling import wait_for

from pygmy.config import Config

BOOKS = range(1, 8)  # the default catalog's ids
SETTLE = 20.0  # seconds a cluster may take to elect leaders and catch every replica up


def wait_until(condition: Callable[[], Any], what: str, timeout: float = SETTLE) -> Any:
    """Until `condition` holds; a node that does not answer yet counts as "not yet"."""
    return wait_for(what, condition, timeout, ignoring=(requests.RequestException,))


def health(cluster: Cluster) -> dict[str, Any]:
    return requests.get(f"{cluster.frontend_url}/health", timeout=5).json()


def all_caught_up(cluster: Cluster) -> bool:
    """Every backend replica up, one leader per group, and each replica has applied what its group committed."""
    doc = health(cluster)
    if doc["status"] != "ok":
        return False
    for kind in ("catalog", "order"):
        nodes = [n for n in doc["nodes"] if n["kind"] == kind]
        if len({n["applied"] for n in nodes}) != 1 or sum(n["role"] == "leader" for n in nodes) != 1:
            return False
    return True


def ready(cluster: Cluster) -> Api:
    """The cluster's API once it serves: leaders elected, catalog loaded, every replica caught up."""
    api = Api(cluster.frontend_url, cluster.admin_token)
    wait_until(lambda: api.get("/lookup/1").status_code == 200, "the catalog to serve")
    wait_until(lambda: all_caught_up(cluster), "every replica to catch up")
    return api


def some_buys_and_restocks(api: Api) -> None:
    for item in (1, 1, 2, 5):
        api.bought(item)
    api.update(3, {"stock_delta": 7})
    api.update(4, {"stock_delta": -4, "cost": 9.5})
    api.bought(3)


def check(cluster: Cluster, *args: str) -> Any:
    return run_pygmy("check", "--config", str(cluster.config_path), *args, timeout=120)


def follower(cluster: Cluster, kind: str) -> int:
    doc = health(cluster)
    return next(n["id"] for n in doc["nodes"] if n["kind"] == kind and n["role"] == "follower")


@pytest.fixture
def ops_cluster(make_cluster: Callable[..., Cluster]) -> Cluster:
    return make_cluster("ops")


# -- status ----------------------------------------------------------------------------------------


def test_status_shows_every_node_and_one_leader_per_group(ops_cluster: Cluster) -> None:
    ready(ops_cluster)
    out = succeeded(run_pygmy("status", "--url", ops_cluster.frontend_url))
    rows = [re.split(r"\s*[│|]\s*", line.strip(" │|")) for line in out.splitlines() if re.search(r"(catalog|order|frontend)-\d", line)]
    by_node = {row[0]: row for row in rows if re.fullmatch(r"(catalog|order|frontend)-\d", row[0])}
    assert set(by_node) == {"frontend-0"} | {f"{k}-{i}" for k in ("catalog", "order") for i in range(3)}, out
    for kind in ("catalog", "order"):
        leaders = [name for name, row in by_node.items() if name.startswith(kind) and row[3] == "leader"]
        assert len(leaders) == 1, out
        leader = leaders[0]
        term = by_node[leader][4]
        # Every replica names the same leader, and the group line says it too.
        assert all(row[5] == leader for name, row in by_node.items() if name.startswith(kind)), out
        assert f"{kind}: leader {leader}, term {term}, 3/3 up" in out
    assert "Cluster: ok" in out


def test_status_json_is_the_status_document(ops_cluster: Cluster) -> None:
    ready(ops_cluster)
    doc = json.loads(succeeded(run_pygmy("status", "--json", "--url", ops_cluster.frontend_url)))
    assert doc["status"] == "ok"
    for kind in ("catalog", "order"):
        group = doc["groups"][kind]
        assert group["leader"] and group["replicas"] == 3 and group["up"] == 3 and group["quorum"]
    entry = next(n for n in doc["nodes"] if n["name"] == "catalog-0")
    for key in ("kind", "id", "name", "url", "status", "role", "term", "leader", "commit", "applied",
                "last_index", "snapshot_index", "last_contact", "restarts", "started"):
        assert key in entry


# -- check -----------------------------------------------------------------------------------------


def test_check_passes_after_buys_and_restocks(ops_cluster: Cluster) -> None:
    some_buys_and_restocks(ready(ops_cluster))
    out = succeeded(check(ops_cluster))
    assert "all replicas agree and the books balance" in out
    report = json.loads(succeeded(check(ops_cluster, "--json")))
    assert report["ok"]
    compared = {(f["check"], f["where"]) for f in report["findings"] if f["level"] == "ok"}
    # It compared something: every replica's digest, every catalog replica's books, every order replica's ledger.
    for i in range(3):
        assert ("digest", f"catalog-{i}") in compared and ("digest", f"order-{i}") in compared
        assert ("ledger", f"catalog-{i}") in compared and ("orders", f"order-{i}") in compared


def test_check_fails_naming_the_replica_and_the_book_after_a_planted_divergence(ops_cluster: Cluster) -> None:
    api = ready(ops_cluster)
    some_buys_and_restocks(api)
    succeeded(check(ops_cluster))
    victim = follower(ops_cluster, "catalog")
    ops_cluster.kill("catalog", victim)
    # Behind the log's back: one book's stock changes in this replica's database only.
    db = sqlite3.connect(ops_cluster.data_dir / f"catalog-{victim}" / "catalog.sqlite3")
    with db:
        assert db.execute("UPDATE books SET stock = stock + 5 WHERE id = 4").rowcount == 1
    db.close()
    ops_cluster.restart("catalog", victim)
    ready(ops_cluster)

    result = check(ops_cluster)
    out = failed_cleanly(result)
    assert result.returncode == 1, out
    assert f"catalog-{victim}" in out and "diverged" in out, out
    report = json.loads(check(ops_cluster, "--json").stdout)
    failures = [f for f in report["findings"] if f["level"] == "fail"]
    assert not report["ok"]
    assert {f["where"] for f in failures} == {f"catalog-{victim}"}, failures
    ledger = [f["detail"] for f in failures if f["check"] == "ledger"]
    assert len(ledger) == 1 and ledger[0].startswith("item 4: stock expected") and "found" in ledger[0], ledger
    # The group's stock, from its leader: the frontend's reads go round-robin, to the planted replica too.
    leader = ops_cluster.url("catalog", ops_cluster.leader("catalog")[0])
    stock = requests.get(f"{leader}/internal/books/4", headers=ops_cluster.secret_headers(), timeout=10).json()["stock"]
    assert f"stock expected {stock}" in ledger[0] and f"found {stock + 5}" in ledger[0], ledger


# -- backup and restore ----------------------------------------------------------------------------


def identity(cluster: Cluster, node: str) -> dict[str, Any]:
    return json.loads((cluster.data_dir / node / "raft" / "identity").read_text())


def books_and_orders(api: Api) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    return [api.lookup(item) for item in BOOKS], api.all_orders()


def test_backup_and_restore_make_a_new_cluster_with_the_same_books_and_orders(
    ops_cluster: Cluster, tmp_path: Path
) -> None:
    api = ready(ops_cluster)
    some_buys_and_restocks(api)
    before = books_and_orders(api)
    backup = tmp_path / "pygmy.backup"
    succeeded(run_pygmy("backup", str(backup), "--config", str(ops_cluster.config_path), timeout=120))
    api.bought(6)  # after the backup: the restored cluster must not have it

    restored = Cluster(tmp_path / "restored")
    out = succeeded(run_pygmy("restore", str(backup), "--data-dir", str(restored.data_dir),
                              "--config", str(restored.config_path)))
    cluster_id = json.loads((restored.data_dir / "cluster.json").read_text())["cluster_id"]
    assert cluster_id in out and f'cluster_id = "{cluster_id}"' in (restored.data_dir / "pygmy.toml").read_text()
    restored.set_cluster_id(cluster_id)
    try:
        restored.start()
        restored_api = ready(restored)
        assert books_and_orders(restored_api) == before  # stock, costs and orders as at the backup, not re-seeded
        succeeded(check(restored))
        # A new cluster: a new id, recorded by every member (once the configuration carries it to the nodes).
        source_cluster = identity(ops_cluster, "catalog-0")["cluster"].rsplit("/", 1)[0]
        assert cluster_id != source_cluster
        # ...and it goes on: a buy takes the next order id and a copy from the restored stock.
        order = restored_api.bought(1)
        assert order["order_id"] == max(o["order_id"] for o in before[1]) + 1
        assert restored_api.stock(1) == before[0][0]["stock"] - 1
        succeeded(check(restored))
    finally:
        restored.stop()
    recorded = {identity(restored, f"{kind}-{i}")["cluster"] for kind in ("catalog", "order") for i in range(3)}
    if "cluster_id" in Config.__dataclass_fields__:  # the configuration carries the id to `pygmy serve`
        assert recorded == {f"{cluster_id}/catalog", f"{cluster_id}/order"}


def test_restore_refuses_a_data_dir_that_holds_a_cluster(ops_cluster: Cluster, tmp_path: Path) -> None:
    ready(ops_cluster)
    backup = tmp_path / "pygmy.backup"
    succeeded(run_pygmy("backup", str(backup), "--config", str(ops_cluster.config_path), timeout=120))
    out = failed_cleanly(run_pygmy("restore", str(backup), "--data-dir", str(ops_cluster.data_dir),
                                   "--config", str(ops_cluster.config_path)))
    assert "not empty" in out


def test_restore_refuses_a_damaged_backup(tmp_path: Path) -> None:
    damaged = tmp_path / "damaged.backup"
    damaged.write_bytes(b"\x00not a backup")
    out = failed_cleanly(run_pygmy("restore", str(damaged), "--data-dir", str(tmp_path / "data")))
    assert "not a Pygmy backup" in out


@pytest.mark.parametrize("command", ["status", "check", "backup", "restore"])
def test_every_operator_command_has_help(command: str) -> None:
    out = succeeded(run_pygmy(command, "--help"))
    assert "Usage" in out and command in out
