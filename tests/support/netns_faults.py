"""Faults between namespaced nodes beyond a clean cut: delay, random loss, and one channel cut alone.

- `DelayedNetnsCluster`: every node in its own namespace (as `NetnsCluster`), and every connection to a
  node goes through `pygmy delay-proxy` in the test's namespace. The configuration names each node at a
  proxy address on the bridge (`<prefix>.<100+i>`, same ports); the node itself listens on all of its
  namespace's addresses (PYGMY_BIND_HOST=0.0.0.0) at `<prefix>.<10+i>`, where its proxy forwards. So
  every node-to-node hop (and the tests' own requests) is delayed once each way. A node sees all its
  peers come from the bridge address, so `Network.cut` between two nodes does not apply here.
- `drop_at_random`: iptables' `statistic` match drops a share of the packets every node receives.
- `cut_invalidations`: drop only the catalog's connections to a frontend's port (how the catalog leader
  sends `begin`/`end`), leaving the frontend's own connections to the catalog (its lease renewals).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

from support.cluster import LIVE, STOP_TIMEOUT, Cluster, pygmy_command
from support.netns import NetnsCluster, Network, run

PROXY_LOG = "delay-proxy"
PROXY_READY_TIMEOUT = 20.0


class DelayedNetnsCluster(NetnsCluster):
    """A `NetnsCluster` whose nodes reach each other (and are reached) through a delay proxy."""

    def __init__(self, root: Path, *, delay_ms: float, **options: object) -> None:
        all_env = {**(options.pop("all_env", None) or {}), "PYGMY_BIND_HOST": "0.0.0.0"}  # type: ignore[dict-item]
        super().__init__(root, all_env=all_env, **options)
        self.delay_ms = delay_ms
        prefix = self.network.prefix
        self.proxy_addresses = {n.name: f"{prefix}.{100 + i}" for i, n in enumerate(self.nodes)}
        self.nodes = [replace(n, host=self.proxy_addresses[n.name]) for n in self.nodes]
        self.config_path.write_text(self.config_toml())
        self.proxy: subprocess.Popen[bytes] | None = None

    def routes(self) -> list[str]:
        """`LISTEN=TARGET` for every port of every node: its proxy address to its namespace address."""
        found = []
        for n in self.nodes:
            for port in (n.port, n.raft_port):
                if port:
                    found.append(f"{n.host}:{port}={self.network.addresses[n.name]}:{port}")
        return found

    def command(self, args: list[str], log_name: str) -> list[str]:
        if log_name == PROXY_LOG:  # the proxy runs in the test's namespace, where the bridge is
            return pygmy_command(*args)
        return super().command(args, log_name)

    def start(self) -> "DelayedNetnsCluster":
        self.network.create()
        try:
            for address in self.proxy_addresses.values():
                run("ip", "addr", "add", f"{address}/24", "dev", self.network.bridge)
            self._start_proxy()
            Cluster.start(self)
        except BaseException:
            self.stop()
            raise
        return self

    def _start_proxy(self) -> None:
        args = ["delay-proxy", "--delay-ms", str(self.delay_ms)]
        for route in self.routes():
            args += ["--route", route]
        self.proxy = self._spawn(args, PROXY_LOG)
        deadline = time.monotonic() + PROXY_READY_TIMEOUT
        for n in self.nodes:
            while not _accepts(n.host, n.port):
                assert self.proxy.poll() is None, f"the delay proxy exited\n{self.logs()}"
                assert time.monotonic() < deadline, f"the delay proxy never listened on {n.host}:{n.port}"
                time.sleep(0.05)
        self.set_delay(False)  # nodes start without it; a test turns it on when it wants the faults

    def set_delay(self, on: bool) -> None:
        """Every hop `delay_ms` late each way (on), or the proxies forward at once (off)."""
        assert self.proxy is not None
        os.kill(self.proxy.pid, signal.SIGUSR1 if on else signal.SIGUSR2)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            Cluster.stop(self)
        if self.proxy is not None:
            self.proxy.terminate()
            try:
                self.proxy.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proxy.kill()
                self.proxy.wait(STOP_TIMEOUT)
            LIVE.pop(self.proxy.pid, None)
            self.proxy = None
        self.network.destroy()


def _accepts(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) == 0


def drop_at_random(network: Network, names: list[str], probability: float) -> None:
    """Drop that share of the packets each named node receives (so of both directions of every hop)."""
    for name in names:
        network.iptables(name, "-A", "INPUT", "-m", "statistic", "--mode", "random",
                         "--probability", f"{probability}", "-j", "DROP")


def dropped_at_random(network: Network, names: list[str]) -> int:
    """Packets the `drop_at_random` rules have dropped so far, over the named nodes."""
    total = 0
    for name in names:
        listing = run("ip", "netns", "exec", network.namespaces[name], "iptables", "-nvxL", "INPUT")
        total += sum(int(line.split()[0]) for line in listing.splitlines() if "statistic mode random" in line)
    return total


def cut_invalidations(cluster: NetnsCluster, frontend: str) -> None:
    """Cut the catalog leader's invalidation channel to `frontend`: connections the catalog replicas open
    to the frontend's port. The frontend's requests to the catalog (lease renewals, reads, writes) leave
    from its ephemeral ports and still pass, both ways."""
    port = str(cluster.spec(frontend).port)
    for i in range(cluster.replicas):
        catalog = cluster.network.addresses[f"catalog-{i}"]
        cluster.network.iptables(frontend, "-A", "INPUT", "-p", "tcp", "-s", catalog, "--dport", port, "-j", "DROP")
        cluster.network.iptables(frontend, "-A", "OUTPUT", "-p", "tcp", "-d", catalog, "--sport", port, "-j", "DROP")
