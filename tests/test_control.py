"""The control endpoint of `pygmy up` (docs/contracts.md, "Control endpoint"): admin token only; list the
nodes with their PIDs; kill -9 one (and the supervisor restarts it); restart one; hand a group's leadership
to a follower; a bounded open-loop load.

The first half serves the control app over real HTTP in front of a Supervisor whose nodes are real
stand-in processes (`sleep`) and whose clock the test moves, so "stopped" and "restarting" hold still
while they are checked. The second half runs `pygmy up --control` with the real nodes.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import pytest
import requests
from aiohttp.test_utils import TestClient, TestServer

from pygmy.cluster.control import create_app
from pygmy.cluster.launcher import Supervisor
from pygmy.config import Node, load
from support.cli import failed_cleanly, run_pygmy
from support.cluster import Cluster, pid_alive
from support.http import Api, assert_error
from support.polling import wait_for

DEADLINE = 60.0
TOKEN = "control-test-token-0123456789"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def sleeper(node: Node, join: bool) -> list[str]:
    return [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def supervisor(tmp_path: Path) -> Iterator[Supervisor]:
    config = load().with_replicas(1).with_overrides(data_dir=tmp_path / "data", admin_token=TOKEN)
    sup = Supervisor(config, command=sleeper, answers=lambda node: True, report=lambda line: None, clock=Clock())
    sup.start()
    yield sup
    sup.stop()


@pytest.fixture
async def control(supervisor: Supervisor) -> AsyncIterator[TestClient]:
    async with TestClient(TestServer(create_app(supervisor))) as client:
        yield client


async def error_of(resp: Any, status: int, code: str | None = None) -> dict[str, str]:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"} and body["error"]["message"], body
    if code is not None:
        assert body["error"]["code"] == code, body
    return body["error"]


# -- the API, in front of stand-in nodes -----------------------------------------------------------


@pytest.mark.parametrize("method,path", [
    ("GET", "/control/nodes"), ("POST", "/control/nodes/catalog-0/kill"), ("POST", "/control/nodes/order-0/restart"),
    ("POST", "/control/nodes/order-0/transfer"), ("GET", "/control/load"), ("POST", "/control/load"),
    ("DELETE", "/control/load"), ("GET", "/control/no-such-route"),
])
async def test_every_route_refuses_a_caller_without_the_admin_token(control: TestClient, supervisor: Supervisor, method: str, path: str) -> None:
    await error_of(await control.request(method, path), 401, "unauthorized")
    await error_of(await control.request(method, path, headers={"Authorization": "Bearer wrong"}), 403, "forbidden")
    assert all(m.running for m in supervisor.members.values()), "a refused request must not have acted"


async def test_the_node_list_names_every_node_with_its_pid_and_state(control: TestClient, supervisor: Supervisor) -> None:
    body = await (await control.get("/control/nodes", headers=AUTH)).json()
    rows = {row["name"]: row for row in body["nodes"]}
    assert set(rows) == {"frontend-0", "catalog-0", "order-0"}
    for name, row in rows.items():
        member = supervisor.members[name]
        assert member.proc is not None
        assert row == {"name": name, "kind": member.node.kind, "id": 0, "url": member.node.url, "pid": member.proc.pid,
                       "state": "running", "restarts": 0, "auto_restart": True}


async def test_kill_sends_sigkill_and_the_node_is_restarting_until_the_supervisor_starts_it(control: TestClient, supervisor: Supervisor) -> None:
    pid = supervisor.members["catalog-0"].proc.pid  # type: ignore[union-attr]
    resp = await control.post("/control/nodes/catalog-0/kill", headers=AUTH)
    assert resp.status == 200
    row = (await resp.json())["node"]
    assert row["pid"] is None and row["state"] == "restarting"
    assert not pid_alive(pid), "the process still runs after kill"
    assert supervisor.members["catalog-0"].proc.returncode == -9  # type: ignore[union-attr]
    # Killed again before the restart: it is not running.
    await error_of(await control.post("/control/nodes/catalog-0/kill", headers=AUTH), 409, "not_running")
    supervisor.poll()  # the supervisor notices the exit and schedules the restart (the clock stands still)
    supervisor.clock.now += 1  # type: ignore[attr-defined]
    supervisor.poll()
    row = [r for r in (await (await control.get("/control/nodes", headers=AUTH)).json())["nodes"] if r["name"] == "catalog-0"][0]
    assert row["state"] == "running" and row["restarts"] == 1 and row["pid"] not in (None, pid)


async def test_restart_starts_a_stopped_node_and_replaces_a_running_one(tmp_path: Path) -> None:
    config = load().with_replicas(1).with_overrides(data_dir=tmp_path / "data", admin_token=TOKEN)
    sup = Supervisor(config, restart=False, command=sleeper, answers=lambda n: True, report=lambda line: None, clock=Clock())
    sup.start()
    try:
        async with TestClient(TestServer(create_app(sup))) as control:
            await control.post("/control/nodes/order-0/kill", headers=AUTH)
            sup.poll()
            row = (await (await control.get("/control/nodes", headers=AUTH)).json())["nodes"]
            assert {r["name"]: r["state"] for r in row}["order-0"] == "stopped"
            body = await (await control.post("/control/nodes/order-0/restart", headers=AUTH)).json()
            assert body["node"]["state"] == "running" and body["node"]["restarts"] == 1
            first = body["node"]["pid"]
            body = await (await control.post("/control/nodes/order-0/restart", headers=AUTH)).json()
            assert body["node"]["pid"] not in (None, first) and not pid_alive(first)
    finally:
        sup.stop()


async def test_unknown_nodes_routes_and_bad_loads_are_4xx_json(control: TestClient) -> None:
    for action in ("kill", "restart", "transfer"):
        await error_of(await control.post(f"/control/nodes/nobody-9/{action}", headers=AUTH), 404, "unknown_node")
    await error_of(await control.get("/control/elsewhere", headers=AUTH), 404)
    await error_of(await control.delete("/control/nodes", headers=AUTH), 405)
    await error_of(await control.post("/control/nodes/frontend-0/transfer", headers=AUTH), 409, "not_leader")
    for body in ({"mix": "everything"}, {"rate": 0}, {"rate": 10_000}, {"seconds": -1}, {"seconds": "long"}, {"speed": 3}):
        await error_of(await control.post("/control/load", json=body, headers=AUTH), 400, "bad_load")
    await error_of(await control.post("/control/load", data=b"[1]", headers=AUTH), 400, "bad_body")
    status = await (await control.get("/control/load", headers=AUTH)).json()
    assert status["running"] is False and status["sent"] == 0


# -- `pygmy up --control` with the real nodes ------------------------------------------------------


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    cluster = Cluster(tmp_path_factory.mktemp("control"), mode="up", control=True, ready_timeout=DEADLINE)
    try:
        cluster.start()
        yield cluster
    finally:
        cluster.stop()


def call(cluster: Cluster, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(method, cluster.control_url + path, headers=cluster.admin_headers(), timeout=30, **kwargs)


def nodes(cluster: Cluster) -> dict[str, dict[str, Any]]:
    return {row["name"]: row for row in call(cluster, "GET", "/control/nodes").json()["nodes"]}


def test_up_refuses_a_control_endpoint_off_loopback_with_a_published_token(tmp_path: Path) -> None:
    config = tmp_path / "pygmy.toml"
    from pygmy.config import DEFAULT_TOML

    # The token an earlier README printed: anyone could kill nodes with it.
    config.write_text('admin_token = "pygmy-admin"\n' + DEFAULT_TOML + '\n[control]\nenabled = true\nhost = "0.0.0.0"\n')
    assert "off loopback" in failed_cleanly(run_pygmy("up", "--config", str(config), "--data-dir", str(tmp_path / "d")))


def test_the_nodes_pids_are_the_processes_up_started(up: Cluster) -> None:
    rows = nodes(up)
    assert len(rows) == 7 and all(r["state"] == "running" for r in rows.values())
    assert {r["pid"] for r in rows.values()} == up.up_children()


def test_kill_really_kills_the_leader_and_up_restarts_it(up: Cluster) -> None:
    leader, term = up.leader("catalog", timeout=DEADLINE)
    name = f"catalog-{leader}"
    pid = nodes(up)[name]["pid"]
    resp = call(up, "POST", f"/control/nodes/{name}/kill")
    assert resp.status_code == 200 and resp.json()["node"]["state"] != "running"
    assert not pid_alive(pid)
    row = wait_for(f"{name} running again", lambda: (r := nodes(up)[name])["state"] == "running" and r["pid"] and r, timeout=DEADLINE)
    assert row["pid"] != pid and row["restarts"] >= 1
    wait_for(f"{name} answering again", lambda: up.status("catalog", leader), timeout=DEADLINE)
    _, new_term = up.leader("catalog", timeout=DEADLINE)
    assert new_term > term, "the group must have elected a new leader after its leader was killed"


def test_transfer_moves_the_leadership_and_is_refused_on_a_follower(up: Cluster) -> None:
    leader, _ = up.leader("order", timeout=DEADLINE)
    follower = next(i for i in range(up.replicas) if i != leader)
    assert_error(call(up, "POST", f"/control/nodes/order-{follower}/transfer"), 409, "not_leader")
    body = call(up, "POST", f"/control/nodes/order-{leader}/transfer").json()
    assert body["from"] == f"order-{leader}" and body["to"] not in (None, body["from"])
    new_leader = body["to"]
    wait_for(f"{new_leader} leads", lambda: f"order-{up.leader('order')[0]}" == new_leader, timeout=DEADLINE)


def test_a_load_runs_at_its_rate_for_its_time_restocks_first_and_can_be_stopped(up: Cluster) -> None:
    api = Api(up.frontend_url, up.admin_token)
    for item in range(1, 8):
        api.set_stock(item, 0)  # the load must restock what it may buy
    before = api.order_count()
    started = call(up, "POST", "/control/load", json={"mix": "buy", "rate": 20, "seconds": 2}).json()
    assert started["running"] is True
    assert_error(call(up, "POST", "/control/load", json={"mix": "lookup"}), 409, "load_running")
    done = wait_for("the load ends", lambda: not (s := call(up, "GET", "/control/load").json())["running"] and s, timeout=DEADLINE)
    assert done["sent"] == 40 and done["ok"] == 40 and done["errors"] == 0, done
    assert api.order_count() - before == done["ok"], "every buy the load counted as answered opened one order"
    call(up, "POST", "/control/load", json={"mix": "mixed", "rate": 10, "seconds": 600})
    wait_for("the second load sends", lambda: call(up, "GET", "/control/load").json()["sent"] > 5, timeout=DEADLINE)
    stopped = call(up, "DELETE", "/control/load").json()
    assert stopped["running"] is False and stopped["sent"] < 600 * 10


def test_the_control_table_is_parsed_checked_and_written_to_cluster_toml() -> None:
    from pygmy.config import DEFAULT_TOML, ConfigError, dump, parse

    assert parse(DEFAULT_TOML).control.enabled is False
    cfg = parse(DEFAULT_TOML + "\n[control]\nenabled = true\nport = 8555\n")
    assert cfg.control.url == "http://127.0.0.1:8555" and parse(dump(cfg)).control == cfg.control
    for bad in ("port = 0", "enabled = 'yes'", "host = ''", "colour = 1"):
        with pytest.raises(ConfigError, match="control"):
            parse(DEFAULT_TOML + f"\n[control]\n{bad}\n")
