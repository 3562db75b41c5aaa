"""Hosts without Docker: every node in a Linux network namespace of its own, joined by a bridge.

Each node gets a namespace `pg<tag>-<name>` with one veth interface (address 10.<a>.<b>.<10+i>/24) whose
other end is on a bridge in the test's own namespace; the bridge has .1, so the tests (and `pygmy check`)
reach every node directly, and no node shares another's loopback. Partitions are iptables DROP rules
inside a node's namespace, so they vanish with it. Needs root, iproute2 and iptables
(deploy/netns/install-tools.sh); `unavailable_reason()` says why namespaces cannot be made here.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import random
import secrets
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

from support.cluster import Cluster, NodeSpec

MADE: set[str] = set()  # namespaces and bridges this process made and has not removed yet


def run(*args: str) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=30).stdout


def unavailable_reason() -> str | None:
    """None if namespaces, veth pairs, bridges and iptables work here; otherwise why not, in a sentence."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    for tool in ("ip", "iptables"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (deploy/netns/install-tools.sh installs it)"
    probe = f"pgprobe{secrets.token_hex(3)}"
    try:
        run("ip", "netns", "add", probe)
        run("ip", "netns", "exec", probe, "iptables", "-S")
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace with iptables in it: {getattr(exc, 'stderr', '') or exc}".strip()
    finally:
        subprocess.run(["ip", "netns", "del", probe], capture_output=True, timeout=30)
    return None


class Network:
    """A bridge in this namespace and a namespace per node attached to it."""

    def __init__(self, names: list[str]) -> None:
        self.tag = secrets.token_hex(2)
        self.prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        self.bridge = f"pgbr{self.tag}"
        self.namespaces = {name: f"pg{self.tag}-{name}" for name in names}
        self.addresses = {name: f"{self.prefix}.{10 + i}" for i, name in enumerate(names)}

    def create(self) -> None:
        MADE.add(self.bridge)
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.prefix}.1/24", "dev", self.bridge)
        run("ip", "link", "set", self.bridge, "up")
        for i, (name, ns) in enumerate(self.namespaces.items()):
            MADE.add(ns)
            outside, inside = f"pg{self.tag}o{i}", f"pg{self.tag}i{i}"
            run("ip", "netns", "add", ns)
            run("ip", "link", "add", outside, "type", "veth", "peer", "name", inside)
            run("ip", "link", "set", inside, "netns", ns)
            run("ip", "link", "set", outside, "master", self.bridge, "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addresses[name]}/24", "dev", inside)
            run("ip", "-n", ns, "link", "set", inside, "up")
            run("ip", "-n", ns, "link", "set", "lo", "up")

    def destroy(self) -> None:
        for ns in self.namespaces.values():  # deleting a namespace deletes its veth pair and its rules
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=30)
            MADE.discard(ns)
        subprocess.run(["ip", "link", "del", self.bridge], capture_output=True, timeout=30)
        MADE.discard(self.bridge)

    def iptables(self, name: str, *rule: str) -> None:
        run("ip", "netns", "exec", self.namespaces[name], "iptables", *rule)

    def cut(self, name: str, others: list[str]) -> None:
        """Drop every packet between `name` and each of `others`, both ways (a symmetric partition)."""
        for other in others:
            self.iptables(name, "-A", "INPUT", "-s", self.addresses[other], "-j", "DROP")
            self.iptables(name, "-A", "OUTPUT", "-d", self.addresses[other], "-j", "DROP")

    def heal(self, name: str) -> None:
        self.iptables(name, "-F")


def _remove_leftovers() -> None:
    for thing in list(MADE):
        kind = ["ip", "netns", "del"] if "-" in thing else ["ip", "link", "del"]
        subprocess.run([*kind, thing], capture_output=True, timeout=30)


atexit.register(_remove_leftovers)


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
