"""The control endpoint of `pygmy up`: list the nodes, kill -9 one, restart one, move a group's
leadership, and run a steady load (the contract is in docs/contracts.md, "Control endpoint").

It is off unless asked for (`pygmy up --control` or `[control] enabled = true`), answers only with the
admin token, and binds to loopback by default. It runs inside the `pygmy up` process, in a thread of its
own with its own event loop, beside the Supervisor's polling loop; it acts on the Supervisor under the
Supervisor's lock, so a kill and the restart the Supervisor then makes never race.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from aiohttp import web

from pygmy.cluster.credentials import MIN_SECRET_LENGTH, is_loopback, weakness
from pygmy.cluster.launcher import Supervisor
from pygmy.cluster.load import Load, LoadError, LoadSpec
from pygmy.cluster.netlab import add_routes as add_partition_routes
from pygmy.cluster.netns import Network
from pygmy.common.auth import require_admin
from pygmy.common.errors import ApiError, Handler, bad_request, error_middleware, not_found
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.common.server import run_with_app
from pygmy.common.tier_client import TierClient, TierUnavailable
from pygmy.common.timing import server_timing_middleware
from pygmy.config import Config, ConfigError, ControlSettings

log = logging.getLogger(__name__)

SUPERVISOR = web.AppKey("supervisor", Supervisor)
STATE = web.AppKey("control_state", dict)
TRANSFER_TIMEOUT = 5.0


def check_binding(config: Config) -> None:
    """Off loopback, anyone who can reach the port can kill nodes with the token: refuse a weak one."""
    settings = config.control
    if not settings.enabled or is_loopback(settings.host):
        return
    why = weakness(config.admin_token)
    if why is not None:
        raise ConfigError(
            f"the control endpoint would listen on {settings.host}, off loopback, with an admin token that is {why}: "
            f"set admin_token to a random secret of at least {MIN_SECRET_LENGTH} characters, or keep "
            f"[control] host = \"127.0.0.1\""
        )


# -- routes ------------------------------------------------------------------------------------------


def row(supervisor: Supervisor, name: str) -> dict[str, Any]:
    member = supervisor.members[name]
    node = member.node
    return {
        "name": name,
        "kind": node.kind,
        "id": node.id,
        "url": node.url,
        "pid": member.proc.pid if member.running and member.proc is not None else None,
        "state": supervisor.state_of(name),
        "restarts": member.restarts,
        "auto_restart": supervisor.restart and not member.damaged,
    }


def _member_name(request: web.Request) -> str:
    name = request.match_info["name"]
    if name not in request.app[SUPERVISOR].members:
        raise not_found(f"no node named {name!r} in this cluster", "unknown_node")
    return name


async def list_nodes(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    with supervisor.guard:
        rows = [row(supervisor, name) for name in supervisor.members]
    return json_response({"nodes": rows})


async def kill_node(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    name = _member_name(request)
    # A blocking wait for the killed process (milliseconds) and the lock: off the event loop.
    try:
        await asyncio.to_thread(supervisor.kill, name)
    except ProcessLookupError:
        raise ApiError(409, "not_running", f"{name} is not running (state {supervisor.state_of(name)})") from None
    return json_response({"node": row(supervisor, name)})


async def restart_node(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    name = _member_name(request)
    await asyncio.to_thread(supervisor.restart_node, name)
    return json_response({"node": row(supervisor, name)})


async def transfer(request: web.Request) -> web.Response:
    supervisor = request.app[SUPERVISOR]
    name = _member_name(request)
    node = supervisor.members[name].node
    if node.kind == "frontend":
        raise ApiError(409, "not_leader", f"{name} is a frontend: it is in no Raft group")
    tiers: TierClient = request.app[STATE]["tiers"]
    try:
        reply = await tiers.call("POST", f"{node.url}/internal/transfer", timeout=TRANSFER_TIMEOUT)
    except TierUnavailable:
        raise ApiError(409, "not_leader", f"{name} does not answer, so it leads nothing") from None
    body = reply.body if isinstance(reply.body, dict) else {}
    if reply.status == 409:
        raise ApiError(409, "not_leader", str(body.get("error", {}).get("message", f"{name} is not the leader")))
    if reply.status != 200:
        raise ApiError(503, "outcome_unknown", f"{name} answered {reply.status} to the transfer; leadership may or may not have moved",
                       headers={"Retry-After": "1"})
    return json_response({"from": name, "to": body.get("to")})


async def start_load(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        spec = LoadSpec.parse(await read_json_object(request))
    except LoadError as exc:
        raise bad_request(str(exc), "bad_load") from None
    current: Load | None = state.get("load")
    if current is not None and current.running:
        raise ApiError(409, "load_running", "a load is running already; DELETE /control/load stops it")
    config = request.app[SUPERVISOR].config
    load = Load(config.of_kind("frontend")[0].url, config.admin_token, spec)
    load.start()
    state["load"] = load
    return json_response(load.document())


async def load_status(request: web.Request) -> web.Response:
    load: Load | None = request.app[STATE].get("load")
    if load is None:
        return json_response({"running": False, "mix": None, "rate": None, "seconds": None, "sent": 0, "ok": 0, "errors": 0})
    return json_response(load.document())


async def stop_load(request: web.Request) -> web.Response:
    await _stop_running_load(request.app[STATE])
    return await load_status(request)


async def _stop_running_load(state: dict[str, Any]) -> None:
    load: Load | None = state.get("load")
    if load is not None:
        await load.stop()


@web.middleware
async def admin_only(request: web.Request, handler: Handler) -> web.StreamResponse:
    # Before routing answers: an unknown route tells nothing to a caller without the token.
    require_admin(request, request.app[SUPERVISOR].config.admin_token)
    return await handler(request)


def create_app(supervisor: Supervisor, network: Network | None = None) -> web.Application:
    app = web.Application(middlewares=[server_timing_middleware("control"), error_middleware, admin_only], client_max_size=64 * 1024)
    app[SUPERVISOR] = supervisor
    # The pool opens its session on first use, so it is made here and used on the control thread's loop.
    app[STATE] = state = {"tiers": TierClient(supervisor.config.cluster_secret)}
    r = app.router
    r.add_get("/control/nodes", list_nodes)
    r.add_post("/control/nodes/{name}/kill", kill_node)
    r.add_post("/control/nodes/{name}/restart", restart_node)
    r.add_post("/control/nodes/{name}/transfer", transfer)
    r.add_get("/control/load", load_status)
    r.add_post("/control/load", start_load)
    r.add_delete("/control/load", stop_load)
    add_partition_routes(app, network)  # 409 unless `pygmy up --netns` (pygmy/cluster/netlab.py)
    run_with_app(app, stop=[lambda: _stop_running_load(state), state["tiers"].close])
    return app


# -- the server thread ---------------------------------------------------------------------------------


class ControlServer:
    """The control app on its own event loop in a daemon thread; `start()` returns once it listens."""

    def __init__(self, supervisor: Supervisor, settings: ControlSettings, network: Network | None = None,
                 also_on: tuple[str, ...] = ()) -> None:
        self.supervisor = supervisor
        self.settings = settings
        self.network = network
        self.also_on = also_on  # more addresses to listen on (the nodes' bridge, under --netns)
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="pygmy-control", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> None:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self._listen(), self._loop)
        try:
            future.result(timeout=10)
        except OSError as exc:
            raise ConfigError(
                f"the control endpoint cannot listen on {self.settings.host}:{self.settings.port} ({exc.strerror}); "
                f"choose another [control] port"
            ) from None
        also = "".join(f" and http://{host}:{self.settings.port}/control" for host in self.also_on)
        self.supervisor.report(
            f"the control endpoint listens on {self.settings.url}/control{also} (admin token required)"
        )

    async def _listen(self) -> None:
        self._runner = web.AppRunner(create_app(self.supervisor, self.network), access_log=None, handle_signals=False)
        await self._runner.setup()
        for host in (self.settings.host, *self.also_on):
            await web.TCPSite(self._runner, host, self.settings.port, reuse_address=True).start()

    def stop(self) -> None:
        if not self._thread.is_alive():
            return
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)


__all__ = ["ControlServer", "check_binding", "create_app"]
