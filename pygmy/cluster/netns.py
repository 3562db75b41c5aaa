"""Hosts without Docker: every node in a Linux network namespace of its own, joined by a bridge.

Each node gets a namespace `pg<tag>-<name>` with one veth interface (address 10.<a>.<b>.<10+i>/24) whose
other end is on a bridge in the caller's namespace; the bridge has .1, so the host (`pygmy status`,
`pygmy check`, a browser) reaches every node directly, and no node shares another's loopback.

Partitions are iptables DROP rules inside a node's namespace: they live as long as the namespace, so they
survive a restart of the node's process, and vanish with the namespace. Needs root, iproute2 and iptables
(deploy/netns/install-tools.sh); `unavailable_reason()` says why namespaces cannot be made here.

`pygmy up --netns` (pygmy/cluster/netlab.py) and the tests (tests/support/netns.py) both use this.
"""

from __future__ import annotations

import hashlib
import os
import random
import re
import secrets
import shutil
import subprocess

MADE: set[str] = set()  # namespaces and bridges this process made and has not removed yet
TIMEOUT = 30


class NetnsError(subprocess.CalledProcessError):
    """A namespace, link or rule could not be made; the message says which command failed and why.

    A CalledProcessError still, for callers that caught that before this module existed.
    """

    def __str__(self) -> str:
        return f"`{' '.join(map(str, self.cmd))}` failed: {(self.stderr or '').strip() or f'exit {self.returncode}'}"


def run(*args: str) -> str:
    try:
        return subprocess.run(args, check=True, capture_output=True, text=True, timeout=TIMEOUT).stdout
    except subprocess.CalledProcessError as exc:
        raise NetnsError(exc.returncode, exc.cmd, exc.output, exc.stderr) from None


def _quietly(*args: str) -> None:
    # Removal of something that may already be gone: its failure is not news.
    subprocess.run(args, capture_output=True, timeout=TIMEOUT)


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
    except (NetnsError, subprocess.TimeoutExpired) as exc:
        return f"cannot make a network namespace with iptables in it: {exc}".strip()
    finally:
        _quietly("ip", "netns", "del", probe)
    return None


class Network:
    """A bridge in this namespace and a namespace per node attached to it.

    Without `seed` the names and addresses are random (tests running side by side); with one (`pygmy up
    --netns` passes its data directory) they are the same on every run, so a run can remove what a killed
    run left behind.
    """

    def __init__(self, names: list[str], seed: str | None = None) -> None:
        if seed is None:
            self.tag = secrets.token_hex(2)
            self.prefix = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
        else:
            digest = hashlib.sha256(seed.encode()).digest()
            # Three bytes: two data directories share names once in 16 million, and the check in
            # `in_use_by_others` refuses rather than tears down a live cluster if they ever do.
            self.tag = digest[:3].hex()
            self.prefix = f"10.{100 + digest[3] % 151}.{digest[4]}"
        self.bridge = f"pgbr{self.tag}"
        self.gateway = f"{self.prefix}.1"  # the bridge's own address: the host as the nodes see it
        self.namespaces = {name: f"pg{self.tag}-{name}" for name in names}
        self.addresses = {name: f"{self.prefix}.{10 + i}" for i, name in enumerate(names)}

    def create(self) -> None:
        MADE.add(self.bridge)
        run("ip", "link", "add", self.bridge, "type", "bridge")
        run("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
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

    def _outside_links(self) -> list[str]:
        return [f"pg{self.tag}o{i}" for i in range(len(self.namespaces))]

    def destroy(self) -> None:
        # Deleting a namespace deletes its veth pair and its rules, but the kernel does it later: the pair is
        # deleted first so that a new network with these names can be made at once.
        for link in self._outside_links():
            _quietly("ip", "link", "del", link)
        for ns in self.namespaces.values():
            _quietly("ip", "netns", "del", ns)
            MADE.discard(ns)
        _quietly("ip", "link", "del", self.bridge)
        MADE.discard(self.bridge)

    def leftovers(self) -> list[str]:
        """Namespaces and the bridge with this network's names that exist now (a killed run's)."""
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=TIMEOUT).stdout
        present = {line.split()[0] for line in listed.splitlines() if line.strip()}
        found = sorted(ns for ns in present if ns.startswith(f"pg{self.tag}-"))
        links = [link for link in (*self._outside_links(), self.bridge) if _link_exists(link)]
        return found + links

    def in_use_by_others(self) -> str | None:
        """Why this network must not be made here, if something live already holds its names or subnet.

        Called before leftovers are removed: `pygmy up` holds its data directory's lock, so a namespace of
        ours with processes in it, or the subnet on another link, belongs to a different cluster whose
        names or addresses hash the same. Removing it would cut that cluster off."""
        for ns in self.leftovers():
            if ns in self.namespaces.values():
                pids = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True, timeout=TIMEOUT).stdout.split()
                if pids:
                    return f"network namespace {ns} is in use (pids {', '.join(pids)}) by another cluster"
        listed = subprocess.run(["ip", "-o", "-4", "addr", "show"], capture_output=True, text=True, timeout=TIMEOUT).stdout
        for line in listed.splitlines():
            fields = line.split()
            if len(fields) > 3 and fields[1] != self.bridge and fields[3].startswith(f"{self.prefix}."):
                return f"the subnet {self.prefix}.0/24 is already on link {fields[1]} ({fields[3]})"
        return None

    def remove_leftovers(self) -> list[str]:
        """Remove what `leftovers()` finds; returns what it removed."""
        found = self.leftovers()
        self.destroy()
        return found

    def command(self, name: str, args: list[str]) -> list[str]:
        """`args` run inside `name`'s namespace (`ip netns exec` execs it: the PID is the node's own)."""
        return ["ip", "netns", "exec", self.namespaces[name], *args]

    def iptables(self, name: str, *rule: str) -> str:
        return run("ip", "netns", "exec", self.namespaces[name], "iptables", "-w", *rule)

    def cut(self, name: str, others: list[str]) -> None:
        """Drop every packet between `name` and each of `others`, both ways (a symmetric partition)."""
        for other in others:
            if other in self.cuts_of(name):
                continue  # cut already: a second pair of rules would need a second heal
            self.iptables(name, "-A", "INPUT", "-s", self.addresses[other], "-j", "DROP")
            self.iptables(name, "-A", "OUTPUT", "-d", self.addresses[other], "-j", "DROP")

    def heal(self, name: str) -> None:
        """Flush every rule in `name`'s namespace (the tests' heal; `heal_links` removes only cuts)."""
        self.iptables(name, "-F")

    # -- the partition lab: cuts as links between nodes, read back from the rules themselves --------------

    def cuts_of(self, name: str) -> set[str]:
        """The nodes `name`'s own namespace drops packets from (both ways, as `cut` makes them)."""
        by_address = {address: other for other, address in self.addresses.items()}
        rules = self.iptables(name, "-S", "INPUT")
        sources = re.findall(r"^-A INPUT -s (\S+?)(?:/32)? -j DROP$", rules, re.MULTILINE)
        return {by_address[s] for s in sources if s in by_address}

    def links(self) -> list[tuple[str, str]]:
        """Every cut link as (the node whose namespace holds the rules, the node it is cut from)."""
        return [(name, other) for name in self.namespaces for other in sorted(self.cuts_of(name))]

    def heal_links(self, name: str | None = None) -> list[tuple[str, str]]:
        """Remove the cuts that involve `name` (every cut if None), wherever their rules are; returns them."""
        healed = [link for link in self.links() if name is None or name in link]
        for holder, other in healed:
            self.iptables(holder, "-D", "INPUT", "-s", self.addresses[other], "-j", "DROP")
            self.iptables(holder, "-D", "OUTPUT", "-d", self.addresses[other], "-j", "DROP")
        return healed


def _link_exists(name: str) -> bool:
    return subprocess.run(["ip", "link", "show", name], capture_output=True, timeout=TIMEOUT).returncode == 0


def remove_made() -> None:
    """Remove every namespace and bridge this process made and has not removed (an atexit safety net)."""
    for thing in list(MADE):
        kind = ["ip", "netns", "del"] if "-" in thing else ["ip", "link", "del"]
        _quietly(*kind, thing)
        MADE.discard(thing)

