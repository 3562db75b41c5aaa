"""The partition lab: `pygmy up --netns` runs every node in its own network namespace at its own address,
and the control endpoint cuts and heals links between them (`pygmy partition`, `pygmy heal`).

The namespaces are named after the data directory, so a run first removes what a killed run with the same
data directory left behind, and `pygmy up` removes them when it exits (Ctrl-C, SIGTERM or an error). Nodes
restarted by the supervisor or the control endpoint run through the same `ip netns exec` prefix, so they
come back inside their namespace; the cuts are rules in the namespaces, so they outlive a node's process.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from typing import Any, Callable

from aiohttp import web

from pygmy.cluster.launcher import Supervisor
from pygmy.cluster.netns import Network, NetnsError, unavailable_reason
from pygmy.common.errors import ApiError, bad_request, not_found
from pygmy.common.jsonio import json_response, read_json_object
from pygmy.config import Config, ConfigError

EXIT_NO_PERMISSION = 77  # EX_NOPERM: not root
EXIT_UNAVAILABLE = 78  # EX_CONFIG: the tools or the kernel are missing

NETWORK = web.AppKey("netlab_network", Network)


class LabUnavailable(ConfigError):
    """Namespaces cannot be made here; `status` is the exit code `pygmy up` leaves with."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NetLab:
    """One cluster's namespaces: made before the nodes start, removed when `pygmy up` exits."""

    def __init__(self, config: Config) -> None:
        self.network = Network([n.name for n in config.nodes], seed=str(config.data_dir.resolve()))
        self.made = False  # whether start() made the network (stop() removes only what is ours)

    @staticmethod
    def check() -> None:
        if os.geteuid() != 0:
            raise LabUnavailable("pygmy up --netns needs root (it makes network namespaces, a bridge and iptables rules): "
                                 "run it with sudo", EXIT_NO_PERMISSION)
        why = unavailable_reason()
        if why is not None:
            raise LabUnavailable(f"pygmy up --netns cannot run: {why}", EXIT_UNAVAILABLE)

    @staticmethod
    def with_control(config: Config) -> Config:
        """The partition commands go through the control endpoint: on, on the host's loopback."""
        return config.with_overrides(control=dataclasses.replace(config.control, enabled=True))

    def nodes_config(self, config: Config) -> Config:
        """What the nodes read: each node at its namespace's address, and the control endpoint at the
        bridge's address (the host's loopback is not the nodes' loopback)."""
        nodes = tuple(dataclasses.replace(n, host=self.network.addresses[n.name]) for n in config.nodes)
        control = dataclasses.replace(config.control, host=self.network.gateway)
        return config.with_overrides(nodes=nodes, control=control)

    def start(self, supervisor: Supervisor) -> None:
        """Remove a killed run's leftovers, make the namespaces, and run every node (and every restart) in its own."""
        clash = self.network.in_use_by_others()
        if clash is not None:
            raise LabUnavailable(f"pygmy up --netns will not touch a live network: {clash}; stop it, or use another "
                                 "--data-dir (the names and subnet come from its path)", EXIT_UNAVAILABLE)
        removed = self.network.remove_leftovers()
        if removed:
            supervisor.report(f"removed {len(removed)} namespaces and links a previous run left behind: {', '.join(removed)}")
        self.made = True
        try:
            self.network.create()
        except NetnsError as exc:
            self.network.destroy()
            raise LabUnavailable(f"the network namespaces could not be made: {exc}", EXIT_UNAVAILABLE) from None
        except BaseException:
            self.network.destroy()
            raise
        supervisor.report(
            f"every node runs in its own network namespace on bridge {self.network.bridge} "
            f"({self.network.prefix}.0/24; this host is {self.network.gateway})"
        )
        serve: Callable[..., list[str]] = supervisor.command
        supervisor.command = lambda node, join: self.network.command(node.name, serve(node, join))

    def stop(self) -> None:
        if self.made:
            self.network.destroy()


# -- the control routes (pygmy/cluster/control.py mounts them) ----------------------------------------------


def _network(request: web.Request) -> Network:
    network = request.app.get(NETWORK)
    if network is None:
        raise ApiError(409, "no_netns", "this cluster was not started with --netns, so it has no links to cut: "
                                        "start it with `sudo pygmy up --netns`")
    return network


def _known(network: Network, name: Any, what: str) -> str:
    if not isinstance(name, str):
        raise bad_request(f"{what} must be a node name such as \"catalog-0\", not {name!r}", "bad_partition")
    if name not in network.namespaces:
        raise not_found(f"no node named {name!r} in this cluster (nodes: {', '.join(network.namespaces)})", "unknown_node")
    return name


def _listing(network: Network) -> list[dict[str, Any]]:
    grouped: dict[str, list[str]] = {}
    for holder, other in network.links():
        grouped.setdefault(holder, []).append(other)
    return [{"node": node, "from": others} for node, others in grouped.items()]


async def _iptables(call: Callable[[], Any]) -> Any:
    # iptables runs as a subprocess: off the event loop. A failure is the host's, not the caller's.
    try:
        return await asyncio.to_thread(call)
    except NetnsError as exc:
        raise ApiError(503, "netns_failed", f"the rules could not be changed: {exc}") from None


async def list_partitions(request: web.Request) -> web.Response:
    network = _network(request)
    return json_response({"partitions": await _iptables(lambda: _listing(network))})


async def add_partition(request: web.Request) -> web.Response:
    network = _network(request)
    body = await read_json_object(request)
    name = _known(network, body.get("node"), "node")
    others = body.get("from")
    if others is None:
        others = sorted(n for n in network.namespaces if n != name)
    if not isinstance(others, list) or not others:
        raise bad_request("from must be a non-empty list of node names (or left out: every other node)", "bad_partition")
    others = [_known(network, other, "every name in from") for other in others]
    if name in others:
        raise bad_request(f"{name} cannot be cut from itself", "bad_partition")
    await _iptables(lambda: network.cut(name, others))
    return json_response({"node": name, "from": others, "partitions": await _iptables(lambda: _listing(network))})


async def heal(request: web.Request) -> web.Response:
    network = _network(request)
    name = request.match_info.get("name")
    if name is not None:
        _known(network, name, "node")
    healed = await _iptables(lambda: network.heal_links(name))
    return json_response({"healed": [{"node": a, "from": b} for a, b in healed],
                          "partitions": await _iptables(lambda: _listing(network))})


def add_routes(app: web.Application, network: Network | None) -> None:
    if network is not None:
        app[NETWORK] = network
    app.router.add_get("/control/partitions", list_partitions)
    app.router.add_post("/control/partitions", add_partition)
    app.router.add_delete("/control/partitions", heal)
    app.router.add_delete("/control/partitions/{name}", heal)
