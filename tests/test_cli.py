"""The `pygmy` command line: readable tables, --json for scripts, --url for another frontend, clean failures."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Callable

import pytest

from support.catalogs import REFERENCE_BOOKS, book, write_csv_catalog
from support.cli import failed_cleanly, json_output, run_pygmy, succeeded
from support.cluster import PYTHON, Cluster, free_ports, pid_alive, port_is_listening
from support.http import Api
from support.polling import wait_for

COMMANDS = ["up", "serve", "search", "lookup", "buy", "update", "orders", "status", "client", "delay-proxy"]


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return cluster.frontend_url


# -- help ------------------------------------------------------------------------------------------


def test_help_lists_every_command() -> None:
    out = succeeded(run_pygmy("--help"))
    for command in COMMANDS:
        assert command in out


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help(command: str) -> None:
    out = succeeded(run_pygmy(command, "--help"))
    assert "Usage" in out and command in out


def test_the_pygmy_console_script_is_installed() -> None:
    script = Path(PYTHON).parent / "pygmy"
    assert script.exists(), f"{script} is missing: is the package installed (pip install -e .)?"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "search" in result.stdout


# -- reading ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("topic", ["ds", "DS", "distributed systems"])
def test_search_prints_the_books_of_the_topic(url: str, topic: str) -> None:
    out = succeeded(run_pygmy("search", topic, "--url", url))
    for item in (1, 2, 5):
        assert REFERENCE_BOOKS[item][0] in out
    assert REFERENCE_BOOKS[3][0] not in out


def test_search_with_json_prints_what_the_api_answers(url: str, api: Api) -> None:
    assert json_output(run_pygmy("search", "gs", "--url", url, "--json")) == api.search("gs")


def test_lookup_prints_title_stock_and_cost(url: str, api: Api) -> None:
    found = api.lookup(7)
    out = succeeded(run_pygmy("lookup", "7", "--url", url))
    assert found["title"] in out and str(found["stock"]) in out


def test_a_url_with_a_trailing_slash_works_too(url: str, api: Api) -> None:
    assert json_output(run_pygmy("lookup", "4", "--url", url + "/", "--json")) == api.lookup(4)


def test_lookup_with_json_prints_what_the_api_answers(url: str, api: Api) -> None:
    assert json_output(run_pygmy("lookup", "4", "--url", url, "--json")) == api.lookup(4)


def test_status_prints_every_node(url: str, cluster: Cluster) -> None:
    out = succeeded(run_pygmy("status", "--url", url))
    for node in cluster.nodes:
        assert str(node.port) in out, f"{node.name} ({node.url}) missing from:\n{out}"
    assert "up" in out


def test_status_with_json_prints_the_health_document(url: str, cluster: Cluster) -> None:
    health = json_output(run_pygmy("status", "--url", url, "--json"))
    assert health["status"] == "ok"
    assert {(n["kind"], n["id"]) for n in health["nodes"]} == {(n.kind, n.id) for n in cluster.nodes}


# -- buying and orders -----------------------------------------------------------------------------


def test_buy_takes_a_copy_and_prints_the_order(url: str, api: Api) -> None:
    api.set_stock(2, 10)
    out = succeeded(run_pygmy("buy", "2", "--url", url))
    assert REFERENCE_BOOKS[2][0] in out
    assert api.stock(2) == 9
    last = api.orders_page(api.order_count() - 1, 1)["orders"][0]
    assert str(last["order_id"]) in out


def test_buy_with_json_and_an_idempotency_key_buys_once(url: str, api: Api) -> None:
    api.set_stock(2, 10)
    first = json_output(run_pygmy("buy", "2", "--idempotency-key", "cli-key-1", "--url", url, "--json"))
    again = json_output(run_pygmy("buy", "2", "--idempotency-key", "cli-key-1", "--url", url, "--json"))
    assert first["order_id"] == again["order_id"] and first["item"] == 2
    assert api.stock(2) == 9


def test_orders_prints_a_page_of_orders(url: str, api: Api) -> None:
    api.set_stock(2, 10)
    placed = api.bought(2)
    total = api.order_count()
    out = succeeded(run_pygmy("orders", "--offset", str(total - 1), "--limit", "1", "--url", url))
    assert str(placed["order_id"]) in out and REFERENCE_BOOKS[2][0] in out


def test_orders_with_json_prints_the_page(url: str, api: Api) -> None:
    api.set_stock(2, 10)
    api.bought(2)
    page = json_output(run_pygmy("orders", "--offset", "0", "--limit", "2", "--url", url, "--json"))
    assert page == api.orders_page(0, 2)


def test_orders_with_an_id_prints_that_order(url: str, api: Api) -> None:
    api.set_stock(2, 10)
    placed = api.bought(2)
    shown = json_output(run_pygmy("orders", str(placed["order_id"]), "--url", url, "--json"))
    assert shown == api.order(placed["order_id"])


# -- admin update ----------------------------------------------------------------------------------


def test_update_with_a_token_changes_stock_and_cost(url: str, api: Api, cluster: Cluster) -> None:
    stock = api.stock(6)
    out = succeeded(run_pygmy("update", "6", "--delta", "3", "--cost", "41.5", "--token", cluster.admin_token, "--url", url))
    assert REFERENCE_BOOKS[6][0] in out
    assert api.lookup(6)["stock"] == stock + 3 and api.lookup(6)["cost"] == 41.5


def test_update_takes_the_token_from_the_environment(url: str, api: Api, cluster: Cluster) -> None:
    stock = api.stock(6)
    env = {"PYGMY_ADMIN_TOKEN": cluster.admin_token}
    updated = json_output(run_pygmy("update", "6", "--delta", "-1", "--url", url, "--json", env=env))
    assert updated["stock"] == stock - 1 == api.stock(6)


def test_update_takes_the_token_from_the_config_file(url: str, api: Api, cluster: Cluster) -> None:
    stock = api.stock(6)
    args = ("update", "6", "--delta", "2", "--config", str(cluster.config_path), "--url", url, "--json")
    assert json_output(run_pygmy(*args))["stock"] == stock + 2 == api.stock(6)


def test_update_with_a_wrong_token_fails_cleanly_and_changes_nothing(url: str, api: Api) -> None:
    book_before = api.lookup(6)
    out = failed_cleanly(run_pygmy("update", "6", "--delta", "5", "--token", "wrong", "--url", url))
    assert "403" in out or "token" in out.lower()
    assert api.lookup(6) == book_before


def test_update_without_a_delta_or_cost_fails_cleanly(url: str, cluster: Cluster) -> None:
    failed_cleanly(run_pygmy("update", "6", "--token", cluster.admin_token, "--url", url))


# -- failures --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [("lookup", "424242"), ("search", "cooking"), ("buy", "424242"), ("orders", "999999999")],
    ids=lambda a: " ".join(a),
)
def test_a_request_the_api_refuses_fails_cleanly_with_its_message(url: str, args: tuple) -> None:
    out = failed_cleanly(run_pygmy(*args, "--url", url))
    assert "404" in out or "not found" in out.lower() or "no " in out.lower()


def test_buying_a_sold_out_book_fails_cleanly(url: str, api: Api) -> None:
    api.set_stock(3, 0)
    out = failed_cleanly(run_pygmy("buy", "3", "--url", url))
    assert "stock" in out.lower() or "409" in out


@pytest.mark.parametrize("command", [("lookup", "1"), ("search", "ds"), ("buy", "1"), ("orders",), ("status",)])
def test_an_unreachable_frontend_fails_cleanly(command: tuple) -> None:
    (dead_port,) = free_ports(1)
    out = failed_cleanly(run_pygmy(*command, "--url", f"http://127.0.0.1:{dead_port}"))
    assert str(dead_port) in out, "say which frontend could not be reached"


def test_without_url_the_cli_talks_to_127_0_0_1_port_8080() -> None:
    if port_is_listening(8080):
        pytest.skip("something listens on 127.0.0.1:8080")
    out = failed_cleanly(run_pygmy("lookup", "1"))
    assert "127.0.0.1:8080" in out


# -- the random workload -------------------------------------------------------------------------


def test_client_runs_the_workload_for_its_duration_and_exits(url: str, cluster: Cluster) -> None:
    started = time.monotonic()
    args = ("client", "--duration", "3", "--interval", "0.2", "--seed", "7", "--config", str(cluster.config_path))
    out = succeeded(run_pygmy(*args, "--url", url, timeout=60))
    elapsed = time.monotonic() - started
    print(f"\npygmy client --duration 3 took {elapsed:.1f} s")
    said = out.lower()
    assert sum(said.count(word) for word in ("search", "lookup", "buy")) >= 3, out


def test_client_with_default_interval_runs_and_exits(url: str, cluster: Cluster) -> None:
    env = {"PYGMY_ADMIN_TOKEN": cluster.admin_token}
    succeeded(run_pygmy("client", "--duration", "3", "--url", url, env=env, timeout=60))


def test_client_with_json_prints_a_machine_readable_summary(url: str, cluster: Cluster) -> None:
    env = {"PYGMY_ADMIN_TOKEN": cluster.admin_token}
    json_output(run_pygmy("client", "--duration", "1", "--interval", "0.2", "--url", url, "--json", env=env, timeout=60))


# -- pygmy up --------------------------------------------------------------------------------------


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_up_starts_the_cluster_prints_its_status_and_stops_every_node_on_a_signal(
    make_cluster: Callable[..., Cluster], tmp_path: Path, stop_signal: signal.Signals
) -> None:
    catalog = write_csv_catalog(tmp_path / "books.csv", [book(1, "Up and Running", "gs", 2, 3.0)])
    c = make_cluster("up", mode="up", data_dir_flag=True, catalog_file=catalog)
    api = Api(c.frontend_url)
    assert api.lookup(1)["title"] == "Up and Running"
    assert (c.data_dir / "catalog-0").is_dir(), "--data-dir must override the configuration's data_dir"
    _wait_for_text(c, "up", [node.name for node in c.serving_nodes()] + ["leader"])  # the status table
    children = c.up_children()
    assert len(children) >= 3, f"expected a child process per serving node, found {children}"
    assert c.up_proc is not None
    proc = c.up_proc
    os.kill(proc.pid, stop_signal)
    assert proc.wait(20) == 0, f"pygmy up should exit 0 after stopping its nodes\n{c.logs()}"
    leftovers = [pid for pid in children if pid_alive(pid)]
    assert not leftovers, f"nodes still running after pygmy up exited: {leftovers}"
    logs = {path.name for path in c.root.rglob("*.log")}
    for node in c.serving_nodes():
        assert f"{node.name}.log" in logs, f"pygmy up keeps a log per node; found {sorted(logs)}"


def _wait_for_text(c: Cluster, log_name: str, words: list[str], timeout: float = 15) -> None:
    wait_for(f"{log_name}.log to mention {words}", lambda: all(w in c.log(log_name) for w in words), timeout,
             details=lambda: c.log(log_name))


# -- starting nodes --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "catalog_text, suffix",
    [("[{\"id\": 1, \"title\": \"x\"}]", ".json"), ("not json at all", ".json"), ("id,title\n1,x\n", ".csv"), ("", ".csv")],
    ids=["json missing fields", "not json", "csv missing columns", "empty csv"],
)
def test_serve_with_a_bad_catalog_file_fails_cleanly(tmp_path: Path, catalog_text: str, suffix: str) -> None:
    layout = Cluster(tmp_path / "cluster")  # only its configuration: nothing is started
    bad = tmp_path / f"books{suffix}"
    bad.write_text(catalog_text)
    out = failed_cleanly(run_pygmy("serve", "catalog", "0", "--config", str(layout.config_path), "--catalog", str(bad), timeout=30))
    assert bad.name in out, "say which file is wrong"


@pytest.mark.parametrize("kind, node_id", [("catalog", "9"), ("gateway", "0")])
def test_serve_of_a_node_not_in_the_configuration_fails_cleanly(tmp_path: Path, kind: str, node_id: str) -> None:
    layout = Cluster(tmp_path / "cluster")
    failed_cleanly(run_pygmy("serve", kind, node_id, "--config", str(layout.config_path), timeout=30))


def test_up_with_a_bad_catalog_file_fails_cleanly_and_leaves_no_node_running(tmp_path: Path) -> None:
    layout = Cluster(tmp_path / "cluster")
    bad = tmp_path / "books.json"
    bad.write_text("not json")
    failed_cleanly(run_pygmy("up", "--config", str(layout.config_path), "--catalog", str(bad), timeout=60))
    still_listening = [n.name for n in layout.serving_nodes() if port_is_listening(n.port)]
    assert not still_listening, f"pygmy up failed but left {still_listening} running"


# -- the status table ------------------------------------------------------------------------------


def test_the_status_table_shows_raft_columns_when_the_nodes_report_them(capsys: pytest.CaptureFixture[str]) -> None:
    from pygmy import cli

    body = {
        "status": "ok",
        "nodes": [
            {"kind": "frontend", "id": 0, "url": "http://127.0.0.1:1", "status": "up"},
            {"kind": "catalog", "id": 1, "url": "http://127.0.0.1:2", "status": "up", "role": "leader", "term": 7, "leader": 1, "commit": 42, "applied": 41},
        ],
    }
    cli._print_health(body)
    table = capsys.readouterr().out
    for word in ("role", "term", "commit", "applied", "leader", "catalog-1", "42", "41"):
        assert word in table, table


def test_the_status_table_of_a_plain_health_document_has_no_raft_columns(capsys: pytest.CaptureFixture[str]) -> None:
    from pygmy import cli

    cli._print_health({"status": "degraded", "nodes": [{"kind": "order", "id": 0, "url": "http://127.0.0.1:3", "status": "down"}]})
    table = capsys.readouterr().out
    assert "order-0" in table and "down" in table and "degraded" in table
    assert "term" not in table


@pytest.mark.parametrize("command, flags", [("up", ["--replicas", "--no-restart"]), ("serve", ["--join"])])
def test_the_supervisor_flags_are_in_the_help(command: str, flags: list[str]) -> None:
    out = succeeded(run_pygmy(command, "--help"))
    for flag in flags:
        assert flag in out
