"""Hosts without Docker: every node in a Linux network namespace of its own, joined by a bridge.

`Network` and `unavailable_reason` are the shipped ones (pygmy/cluster/netns.py, which `pygmy up --netns`
uses too); this harness adds `NetnsCluster`, a test `Cluster` whose nodes run in those namespaces.

Each node gets a namespace `pg<tag>-<name>` with one veth interface (address 10.<a>.<b>.<10+i>/24) whose
other end is on a bridge in the test's own namespace; the bridge has .1, so the tests (and `pygmy check`)
reach every node directly, and no node shares another's loopback. Partitions are iptables DROP rules
inside a node's namespace, so they vanish with it. Needs root, iproute2 and iptables
(deploy/netns/install-tools.sh); `unavailable_reason()` says why namespaces cannot be made here.
"""

from __future__ import annotations

import atexit
import contextlib
from dataclasses import replace
from pathlib import Path

from pygmy.cluster.netns import MADE, Network, remove_made, run, unavailable_reason
from support.cluster import Cluster, NodeSpec

__all__ = ["MADE", "Network", "NetnsCluster", "run", "unavailable_reason"]

atexit.register(remove_made)  # a test that died half-way leaves no namespace behind


class NetnsCluster(Cluster):
    """A `Cluster` whose every node runs in its own namespace at its own address (same ports for all)."""

    def __init__(self, root: Path, **options: object) -> None:
        super().__init__(root, **options)  # type: ignore[arg-type]
        self.network = Network([n.name for n in self.nodes])
        self.nodes = [replace(n, host=self.network.addresses[n.name]) for n in self.nodes]
        self.config_path.write_text(self.config_toml())

    def command(self, args: list[str], log_name: str) -> list[str]:
        return ["ip", "netns", "exec", self.network.namespaces[log_name], *super().command(args, log_name)]

    def start(self) -> "NetnsCluster":
        self.network.create()
        try:
            super().start()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            super().stop()
        self.network.destroy()

    def spec(self, name: str) -> NodeSpec:
        kind, _, node_id = name.rpartition("-")
        return self.node(kind, int(node_id))
