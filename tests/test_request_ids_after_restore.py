"""An orders database restored from a backup issues again the order ids issued after the backup; their
catalog request ids are in a new epoch, so the next buy takes its own copy instead of being answered with
the stored result of another item's buy (the issue's scenario, on a real cluster)."""

from __future__ import annotations

import shutil
from pathlib import Path

from pygmy.config import load
from pygmy.ops.backup import read_backup, restore_group
from support.cli import run_pygmy, succeeded
from support.cluster import Cluster
from support.http import Api, ok_json
from support.polling import wait_for

DEADLINE = 30.0


def wait_for_leaders(api: Api) -> None:
    wait_for("both groups to elect leaders", lambda: api.get("/health").json().get("status") == "ok", DEADLINE, 0.2)


def buy_when_ready(api: Api, item: int) -> dict:
    """One buy, once both groups have a leader (not retried: a refusal must show)."""
    wait_for_leaders(api)
    return ok_json(api.buy(item))


def test_a_buy_after_restoring_the_orders_takes_its_own_copy(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, replicas=1).start()
    try:
        api = Api(cluster.frontend_url)
        first = buy_when_ready(api, 3)  # order 1, before the backup
        backup = tmp_path / "before.pygmy-backup"
        succeeded(run_pygmy("backup", str(backup), "--config", str(cluster.config_path)))
        seven = buy_when_ready(api, 7)  # order 2: the catalog now holds this id's result, for item 7
        assert seven["order_id"] == first["order_id"] + 1
        cluster.stop()

        # Restore the orders (the catalog is kept as it is): the order group forgets order 2.
        for node in ("order-0",):
            shutil.rmtree(cluster.data_dir / node)
        restore_group(read_backup(backup), load(cluster.config_path), cluster.data_dir, "order")
        cluster.start()
        api = Api(cluster.frontend_url)

        one = buy_when_ready(api, 1)
        assert one["order_id"] == seven["order_id"]  # the same order id, issued again
        book = api.lookup(1)
        assert (one["item"], one["title"], one["cost"]) == (1, book["title"], book["cost"])
        assert book["stock"] == 99  # a copy of item 1 was taken for it
        assert api.stock(7) == 99 and api.stock(3) == 99
    finally:
        cluster.stop()
