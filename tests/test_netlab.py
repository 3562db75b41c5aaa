"""The partition lab: `pygmy up --netns` runs every node in its own network namespace, and `pygmy partition`
/ `pygmy heal` cut and heal links through the control endpoint (docs/contracts.md, "Control endpoint").

Real `pygmy up`, real namespaces and iptables; needs root (CI runs as root), skipped with the reason otherwise.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from pygmy.cluster.control import create_app
from pygmy.cluster.launcher import Supervisor
from pygmy.cluster.netns import Network, unavailable_reason
from pygmy.config import load
from support.cli import failed_cleanly, json_output, run_pygmy, succeeded
from support.cluster import Cluster, pygmy_command
from support.http import Api, assert_error
from support.netlab import NetnsUp
from support.polling import wait_for

REASON = unavailable_reason()
needs_netns = pytest.mark.skipif(REASON is not None, reason=f"network namespaces unavailable: {REASON}")
DEADLINE = 60.0
BUYS = 5


def until(what: str, check: Callable[[], Any], timeout: float = DEADLINE) -> Any:
    return wait_for(what, check, timeout)


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NetnsUp]:
    cluster = NetnsUp(tmp_path_factory.mktemp("netlab"), mode="up", control=True, ready_timeout=DEADLINE)
    # What a `pygmy up --netns` killed with SIGKILL on this data directory leaves behind: the next one clears it.
    Network([n.name for n in cluster.nodes], seed=str(cluster.data_dir.resolve())).create()
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
        Network([n.name for n in cluster.nodes], seed=str(cluster.data_dir.resolve())).remove_leftovers()


@pytest.fixture(autouse=True)
def healed_after(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts with every link up, whatever the test before it left cut when it failed."""
    yield
    if "lab" in request.fixturenames:
        cluster: NetnsUp = request.getfixturevalue("lab")
        if cluster.up_proc is not None and cluster.up_proc.poll() is None:
            cluster.control("DELETE", "/control/partitions")


def catalog_status(cluster: Cluster, i: int) -> dict[str, Any] | None:
    return cluster.status("catalog", i)


@needs_netns
def test_every_node_runs_at_its_own_address_inside_its_own_namespace_after_a_killed_runs_are_cleared(lab: NetnsUp) -> None:
    hosts = {n.host for n in lab.nodes}
    assert len(hosts) == len(lab.nodes) and not any(h.startswith("127.") for h in hosts)
    network = Network([n.name for n in lab.nodes], seed=str(lab.data_dir.resolve()))
    assert f"namespaces and links a previous run left behind: {', '.join(sorted(network.namespaces.values()))}" in lab.log("up")
    assert set(network.leftovers()) >= {*network.namespaces.values(), network.bridge}
    for row in lab.control("GET", "/control/nodes").json()["nodes"]:
        pids = subprocess.run(["ip", "netns", "pids", network.namespaces[row["name"]]], capture_output=True, text=True).stdout
        assert str(row["pid"]) in pids.split(), row
    # The dashboard's buttons: the frontend, in its namespace, reaches the control endpoint on the bridge.
    proxied = requests.get(lab.frontend_url + "/dashboard/api/control/nodes", headers=lab.admin_headers(), timeout=30)
    assert proxied.status_code == 200 and len(proxied.json()["nodes"]) == len(lab.nodes), proxied.text


@needs_netns
def test_the_tools_find_the_running_lab_without_being_told_its_namespace_addresses(lab: NetnsUp) -> None:
    # The user's configuration names loopback addresses; the nodes listen in their namespaces.
    env = {"PYGMY_CONFIG": str(lab.config_path)}
    assert json_output(run_pygmy("lookup", "1", "--json", env=env))["id"] == 1
    assert "all replicas agree" in succeeded(run_pygmy("check", "--config", str(lab.config_path), timeout=120))


@needs_netns
def test_a_partitioned_catalog_leader_is_replaced_buys_go_on_and_heal_converges(lab: NetnsUp) -> None:
    api = Api(lab.frontend_url, lab.admin_token)
    api.set_stock(1, 100)
    orders_before = api.order_count()
    old, term = lab.leader("catalog")
    name = f"catalog-{old}"
    said = succeeded(lab.lab("partition", name))
    others = sorted(n.name for n in lab.nodes if n.name != name)
    assert said.startswith(f"cut {name} from {', '.join(others)}"), said
    followers = [i for i in range(lab.replicas) if i != old]
    until("a new catalog leader", lambda: any((s := catalog_status(lab, i)) and s["role"] == "leader" and s["term"] > term
                                              for i in followers))
    for _ in range(BUYS):
        api.bought(1)
    assert api.stock(1) == 100 - BUYS and api.order_count() == orders_before + BUYS
    # The cut outlives the node's process: restarted, it comes back in its namespace, still cut off.
    lab.control("POST", f"/control/nodes/{name}/restart").raise_for_status()
    listed = lab.control("GET", "/control/partitions").json()["partitions"]
    assert listed == [{"node": name, "from": others}], listed
    until(f"{name} to answer again", lambda: catalog_status(lab, old))
    assert catalog_status(lab, old)["leader"] != old  # type: ignore[index]
    healed = succeeded(lab.lab("heal"))
    assert f"healed {len(others)} link(s)" in healed, healed
    assert lab.control("GET", "/control/partitions").json()["partitions"] == []
    new = next(s for i in followers if (s := catalog_status(lab, i)) and s["role"] == "leader")
    until(f"{name} to follow and catch up", lambda: (s := catalog_status(lab, old)) and s["role"] == "follower"
          and s["applied"] >= new["commit"])
    check = run_pygmy("check", "--config", str(lab.data_dir / "cluster.toml"), timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr


@needs_netns
def test_a_cut_of_some_links_only_and_a_heal_of_one_node(lab: NetnsUp) -> None:
    said = succeeded(lab.lab("partition", "frontend-0", "--from", "order-1,catalog-2"))
    assert "cut frontend-0 from order-1, catalog-2" in said, said
    succeeded(lab.lab("partition", "order-0", "--from", "order-2"))
    assert lab.control("GET", "/control/partitions").json()["partitions"] == [
        {"node": "frontend-0", "from": ["catalog-2", "order-1"]}, {"node": "order-0", "from": ["order-2"]}]
    # Healing order-2 removes the cut held in order-0's namespace, and only that one.
    assert "healed 1 link(s): order-0-order-2" in succeeded(lab.lab("heal", "order-2"))
    assert "nothing to heal for order-2" in succeeded(lab.lab("heal", "order-2"))
    assert "still cut: none" in succeeded(lab.lab("heal", "frontend-0"))


@needs_netns
def test_bad_partitions_are_4xx_json_and_one_line_on_the_command_line(lab: NetnsUp) -> None:
    assert_error(lab.control("POST", "/control/partitions", json={"node": "catalog-9"}), 404, "unknown_node")
    assert_error(lab.control("POST", "/control/partitions", json={"node": "order-0", "from": ["nobody-1"]}), 404, "unknown_node")
    assert_error(lab.control("DELETE", "/control/partitions/nobody-1"), 404, "unknown_node")
    for bad in ({"node": 3}, {"node": "order-0", "from": []}, {"node": "order-0", "from": "order-1"},
                {"node": "order-0", "from": ["order-0"]}):
        assert_error(lab.control("POST", "/control/partitions", json=bad), 400, "bad_partition")
    output = failed_cleanly(lab.lab("partition", "catalog-9"))
    assert output.strip().count("\n") == 0 and "404 unknown_node" in output, output


@needs_netns
def test_stopping_up_removes_every_namespace_and_the_bridge(lab: NetnsUp) -> None:
    network = Network([n.name for n in lab.nodes], seed=str(lab.data_dir.resolve()))
    assert lab.up_proc is not None
    lab.up_proc.send_signal(signal.SIGINT)
    assert lab.up_proc.wait(60) == 0, lab.log("up")
    assert network.leftovers() == [], lab.log("up")
    assert "network namespaces removed" in lab.log("up")


# -- without --netns -------------------------------------------------------------------------------------


@pytest.fixture
async def plain_control(tmp_path: Path) -> AsyncIterator[TestClient]:
    token = "netlab-test-token-0123456789abcdef"
    config = load().with_replicas(1).with_overrides(data_dir=tmp_path / "data", admin_token=token)
    sup = Supervisor(config, command=lambda node, join: ["sleep", "60"], answers=lambda node: True, report=lambda line: None)
    sup.start()
    try:
        async with TestClient(TestServer(create_app(sup))) as client:
            client.session.headers["Authorization"] = f"Bearer {token}"
            yield client
    finally:
        sup.stop()


@pytest.mark.parametrize("method,path", [("GET", "/control/partitions"), ("POST", "/control/partitions"),
                                         ("DELETE", "/control/partitions"), ("DELETE", "/control/partitions/catalog-0")])
async def test_without_netns_the_partition_routes_answer_409(plain_control: TestClient, method: str, path: str) -> None:
    resp = await plain_control.request(method, path, json={"node": "catalog-0"})
    assert resp.status == 409 and resp.content_type == "application/json", await resp.text()
    error = (await resp.json())["error"]
    assert error["code"] == "no_netns" and "--netns" in error["message"], error


@needs_netns
def test_up_leaves_a_live_namespace_with_its_names_alone_and_says_why(tmp_path: Path) -> None:
    """Another cluster whose data directory hashes to the same names (or a namespace someone made by hand):
    what holds live processes is not a leftover, and clearing it would cut that cluster off."""
    data = tmp_path / "d"
    network = Network(["frontend-0", "catalog-0"], seed=str(data.resolve()))
    taken = network.namespaces["catalog-0"]
    subprocess.run(["ip", "netns", "add", taken], check=True)
    holder = subprocess.Popen(["ip", "netns", "exec", taken, "sleep", "60"])
    try:
        until("the holder to run in its namespace", lambda: subprocess.run(
            ["ip", "netns", "pids", taken], capture_output=True, text=True).stdout.strip())
        result = run_pygmy("up", "--netns", "--data-dir", str(data), timeout=60)
        output = (result.stdout + result.stderr).strip()
        assert result.returncode == 78 and output.count("\n") == 0, output
        assert f"network namespace {taken} is in use" in output and "another --data-dir" in output, output
        assert holder.poll() is None and taken in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    finally:
        holder.kill()
        holder.wait()
        subprocess.run(["ip", "netns", "del", taken])


def test_up_netns_without_root_says_why_in_one_line(tmp_path: Path) -> None:
    command = ["up", "--netns", "--data-dir", str(tmp_path / "d")]
    if os.geteuid() == 0:  # as root, be somebody else for this run
        if shutil.which("setpriv") is None:
            pytest.skip("running as root without setpriv: the refusal cannot be seen here")
        with tempfile.TemporaryDirectory() as where:  # pytest's own is root's only
            os.chmod(where, 0o777)
            command = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                       *pygmy_command("up", "--netns", "--data-dir", f"{where}/d")]
            result = subprocess.run(command, capture_output=True, text=True, timeout=60, cwd=where)
    else:
        result = run_pygmy(*command)
    output = failed_cleanly(result)
    assert result.returncode == 77 and output.strip().count("\n") == 0 and "needs root" in output, output
