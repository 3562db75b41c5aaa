"""Benchmark the replicated tiers end to end: buys and lookups against real Pygmy clusters on loopback.

    python -m benchmarks.tier_bench                     # everything, writes docs/tier-benchmark.md + .png
    python -m benchmarks.tier_bench --duration 3 --out -

Run from the repository root. In one run, so that ratios compare like with like, it starts its own clusters
(a temporary data dir, free loopback ports, a configuration file written here, one `pygmy serve KIND ID`
process per node, each stopped by PID whatever happens) with fsync on, and measures:

1. buys/s and p50/p99 buy latency through the frontend (POST /buy/{item}, a fresh Idempotency-Key per
   buy, items spread over a catalog with stock enough for every buy) at 1 and 64 concurrent clients, for
   1 and 3 replicas per group;
2. the same at 64 clients with a follower of each group killed (kill -9);
3. lookups/s at 64 clients: a catalog replica's GET /internal/books/{id} directly, linearizable (the
   default) vs `?consistency=stale`, on the leader and on a follower, and GET /lookup/{id} through the
   frontend (which always asks for a linearizable read);
4. elections during each load point: each group's term (highest over its live replicas) before vs after.

Every load point stops after --duration seconds or --max-ops requests, whichever comes first. The driver
is one asyncio process on the same machine as the cluster; the CPU that other processes (not the cluster,
not the driver) used during each point is measured from /proc and printed, so a shared machine shows.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
from rich.console import Console
from rich.table import Table

from tests.support.cluster import LIVE, NodeSpec, free_ports, pygmy_command

NOTES_MARKER = "<!-- notes: kept when the benchmark rewrites this file -->"
BOOKS = 64  # buys and lookups pick an item at random among these
STOCK = 10**9  # per book: no buy in any run can meet an empty shelf
READY_TIMEOUT = 60.0
STOP_TIMEOUT = 10.0
REQUEST_TIMEOUT = 10.0
GROUPS = ("catalog", "order")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")

# -- one cluster, one process per node (every process started is registered in LIVE, killed at exit) ----


class BenchCluster:
    """A frontend and `replicas` replicas of each backend group under `root`, each node its own process."""

    def __init__(self, root: Path, replicas: int, *, sync: bool = True) -> None:
        self.root = root
        self.replicas = replicas
        self.root.mkdir(parents=True)
        (self.root / "logs").mkdir()
        self.admin_token = "admin-" + secrets.token_hex(8)
        self.secret = "secret-" + secrets.token_hex(8)
        ports = iter(free_ports(1 + 4 * replicas))
        self.nodes = [NodeSpec("frontend", 0, next(ports), 0)]
        for kind in GROUPS:
            self.nodes += [NodeSpec(kind, i, next(ports), next(ports)) for i in range(replicas)]
        books = [
            {"id": i, "title": f"Benchmark volume {i}", "topic": "ds" if i % 2 else "gs", "stock": STOCK, "cost": 10.0}
            for i in range(1, BOOKS + 1)
        ]
        (self.root / "books.json").write_text(json.dumps(books))
        self.config_path = self.root / "pygmy.toml"
        self.config_path.write_text(self._config_toml(sync))
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()  # nodes killed on purpose: their absence is not a failure

    def _config_toml(self, sync: bool) -> str:
        lines = [
            "# Written by benchmarks/tier_bench.py",
            f'data_dir = "{self.root / "data"}"',
            f'admin_token = "{self.admin_token}"',
            f'cluster_secret = "{self.secret}"',
            f'catalog_file = "{self.root / "books.json"}"',
            "",
            "[raft]",
            f"sync = {'true' if sync else 'false'}",
        ]
        for n in self.nodes:
            lines += ["", "[[nodes]]", f'kind = "{n.kind}"', f"id = {n.id}", 'host = "127.0.0.1"', f"port = {n.port}"]
            if n.kind != "frontend":
                lines.append(f"raft_port = {n.raft_port}")
        return "\n".join(lines) + "\n"

    def node(self, kind: str, node_id: int = 0) -> NodeSpec:
        return next(n for n in self.nodes if n.kind == kind and n.id == node_id)

    @property
    def frontend(self) -> str:
        return self.node("frontend").url

    @property
    def secret_headers(self) -> dict[str, str]:
        return {"X-Pygmy-Secret": self.secret}

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs.values() if p.poll() is None]

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for n in self.nodes:
            with open(self.root / "logs" / f"{n.name}.log", "ab") as log:
                self.procs[n.name] = subprocess.Popen(
                    pygmy_command("serve", n.kind, str(n.id), "--config", str(self.config_path)),
                    stdout=log, stderr=subprocess.STDOUT, cwd=self.root, env=env,
                    start_new_session=True,  # a Ctrl-C at the terminal reaches the benchmark, which stops them
                )  # fmt: skip
            LIVE[self.procs[n.name].pid] = self.procs[n.name]

    def kill(self, name: str) -> None:
        """kill -9 one node, by the PID this benchmark started it under."""
        proc = self.procs[name]
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(STOP_TIMEOUT)
        LIVE.pop(proc.pid, None)

    def stop(self) -> None:
        """SIGTERM every node started here, SIGKILL whichever has not exited in time."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGTERM)
        for proc in self.procs.values():
            try:
                proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait(STOP_TIMEOUT)
            LIVE.pop(proc.pid, None)

    def log_sizes(self) -> dict[str, int]:
        return {n.name: (self.root / "logs" / f"{n.name}.log").stat().st_size for n in self.nodes}

    def log_lines_since(self, sizes: dict[str, int], pattern: str) -> list[str]:
        """Lines matching `pattern` that the nodes logged after `sizes` were taken."""
        lines = []
        for name, size in sizes.items():
            with open(self.root / "logs" / f"{name}.log", "rb") as f:
                f.seek(size)
                lines += [f"{name}: {line}" for line in f.read().decode(errors="replace").splitlines()
                          if re.search(pattern, line)]  # fmt: skip
        return lines

    def check_alive(self) -> None:
        for name, proc in self.procs.items():
            if proc.poll() is not None and name not in self.killed:
                tail = (self.root / "logs" / f"{name}.log").read_text(errors="replace").splitlines()[-30:]
                raise RuntimeError(f"{name} exited with status {proc.returncode}:\n" + "\n".join(tail))

    # -- asking the nodes ---------------------------------------------------------------------------

    async def status(self, session: aiohttp.ClientSession, node: NodeSpec) -> dict | None:
        try:
            async with session.get(f"{node.url}/internal/status", headers=self.secret_headers,
                                   timeout=aiohttp.ClientTimeout(total=1.0)) as r:  # fmt: skip
                return await r.json() if r.status == 200 else None
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return None

    async def statuses(self, session: aiohttp.ClientSession, kind: str) -> dict[int, dict]:
        nodes = [n for n in self.nodes if n.kind == kind and n.name not in self.killed]
        answers = await asyncio.gather(*(self.status(session, n) for n in nodes))
        return {n.id: s for n, s in zip(nodes, answers) if s is not None}

    async def terms(self, session: aiohttp.ClientSession) -> dict[str, int]:
        """Each group's highest term over its live replicas."""
        return {kind: max((s["term"] for s in (await self.statuses(session, kind)).values()), default=-1) for kind in GROUPS}

    async def leader(self, session: aiohttp.ClientSession, kind: str, timeout: float = READY_TIMEOUT) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            leaders = [(s["term"], i) for i, s in (await self.statuses(session, kind)).items() if s["role"] == "leader"]
            if leaders:
                return max(leaders)[1]
            await asyncio.sleep(0.05)
        raise TimeoutError(f"the {kind} group elected no leader within {timeout} s")

    async def wait_ready(self, session: aiohttp.ClientSession) -> None:
        """Until every node answers, each group has a leader and the catalog has loaded its books."""
        deadline = time.monotonic() + READY_TIMEOUT
        for kind in GROUPS:
            await self.leader(session, kind)
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(aiohttp.ClientError, asyncio.TimeoutError):
                async with session.get(f"{self.frontend}/lookup/{BOOKS}", timeout=aiohttp.ClientTimeout(total=2)) as r:
                    if r.status == 200 and (await r.json())["stock"] == STOCK:
                        return
            await asyncio.sleep(0.1)
        raise TimeoutError("the cluster did not become ready (frontend lookup of the last book)")


# -- CPU accounting: how much of the machine went to other work during a point ------------------------


def _busy_jiffies() -> tuple[int, int]:
    """(busy, total) CPU jiffies of the whole machine since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def _process_jiffies(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[-1].split()
            total += int(stat[11]) + int(stat[12])  # utime + stime
    return total


@dataclass
class CpuShare:
    """Per point: CPU used by the cluster, by the driver and by everything else, in cores."""

    cluster: float = 0.0
    driver: float = 0.0
    other: float = 0.0


class CpuMeter:
    def __init__(self, cluster_pids: Sequence[int]) -> None:
        self.cluster_pids = list(cluster_pids)
        self.started = time.monotonic()
        self.machine = _busy_jiffies()[0]
        self.cluster = _process_jiffies(self.cluster_pids)
        self.driver = _process_jiffies([os.getpid()])

    def stop(self) -> CpuShare:
        seconds = (time.monotonic() - self.started) * CLOCK_TICKS
        machine = _busy_jiffies()[0] - self.machine
        cluster = _process_jiffies(self.cluster_pids) - self.cluster
        driver = _process_jiffies([os.getpid()]) - self.driver
        return CpuShare(cluster / seconds, driver / seconds, max(0, machine - cluster - driver) / seconds)


# -- load ------------------------------------------------------------------------------------------


@dataclass
class Point:
    config: str  # "1 replica", "3 replicas", "3 replicas, a follower of each group down"
    what: str  # "buy via frontend", "lookup on catalog leader, stale", ...
    clients: int
    ops: int
    elapsed: float
    latencies: list[float]
    errors: Counter[str]
    elections: dict[str, int]
    cpu: CpuShare = field(default_factory=CpuShare)
    election_log: list[str] = field(default_factory=list)  # the nodes' own lines about it, when one happened

    @property
    def per_s(self) -> float:
        return self.ops / self.elapsed if self.elapsed else float("nan")

    @property
    def cpu_ms_per_op(self) -> float:
        """Cluster CPU time per answered request: what a request costs, whatever else the machine did."""
        return self.cpu.cluster * self.elapsed / self.ops * 1000 if self.ops else float("nan")

    @property
    def p50_ms(self) -> float:
        return _percentile(self.latencies, 0.50) * 1000

    @property
    def p99_ms(self) -> float:
        return _percentile(self.latencies, 0.99) * 1000


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


Request = Callable[[aiohttp.ClientSession], Awaitable[int]]


async def drive(session: aiohttp.ClientSession, request: Request, clients: int, duration: float, max_ops: int
                ) -> tuple[list[float], Counter[str], float]:  # fmt: skip
    """`clients` loops send `request` back to back until `duration` s pass or `max_ops` were sent.
    Returns the sorted latencies of the 200 answers, the other outcomes counted, and the elapsed time."""
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    stop_at = time.perf_counter() + duration

    async def client() -> None:
        nonlocal sent
        while time.perf_counter() < stop_at and sent < max_ops:
            sent += 1
            start = time.perf_counter()
            try:
                status = await request(session)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                errors[type(exc).__name__] += 1
                await asyncio.sleep(0.01)
                continue
            if status == 200:
                latencies.append(time.perf_counter() - start)
            else:
                errors[str(status)] += 1
                await asyncio.sleep(0.01)  # an error answer must not turn into a busy loop

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client() for _ in range(clients))), duration + 60)
    elapsed = time.perf_counter() - started
    latencies.sort()
    return latencies, errors, elapsed


def buy_request(frontend: str) -> Request:
    async def request(session: aiohttp.ClientSession) -> int:
        item = random.randint(1, BOOKS)
        headers = {"Idempotency-Key": uuid.uuid4().hex}
        async with session.post(f"{frontend}/buy/{item}", headers=headers) as r:
            await r.read()
            return r.status

    return request


def lookup_request(url: str, headers: dict[str, str] | None = None, params: dict[str, str] | None = None) -> Request:
    async def request(session: aiohttp.ClientSession) -> int:
        async with session.get(url.format(item=random.randint(1, BOOKS)), headers=headers, params=params) as r:
            await r.read()
            return r.status

    return request


async def measure(session: aiohttp.ClientSession, cluster: BenchCluster, config: str, what: str, request: Request,
                  clients: int, args: argparse.Namespace) -> Point:  # fmt: skip
    terms_before = await cluster.terms(session)
    sizes = cluster.log_sizes()
    meter = CpuMeter(cluster.pids())
    latencies, errors, elapsed = await drive(session, request, clients, args.duration, args.max_ops)
    cpu = meter.stop()
    terms_after = await cluster.terms(session)
    cluster.check_alive()
    point = Point(config, what, clients, len(latencies), elapsed, latencies, errors,
                  {k: terms_after[k] - terms_before[k] for k in GROUPS}, cpu)  # fmt: skip
    if any(point.elections.values()):
        point.election_log = cluster.log_lines_since(sizes, r"elected|follows|term|leader")[:20]
    Console(width=200).print(
        f"  {config:<44} {what:<38} {clients:>3} clients: {point.per_s:>8,.0f}/s  p50 {point.p50_ms:6.2f} ms  "
        f"p99 {point.p99_ms:6.2f} ms  elections {sum(point.elections.values())}  errors {sum(errors.values())}  "
        f"cpu other {cpu.other:.2f}",
        highlight=False,
    )
    return point


async def bench_cluster(root: Path, replicas: int, args: argparse.Namespace) -> list[Point]:
    """Every load point for one cluster size: buys, lookups, then (with 3+ replicas) buys with followers down."""
    config = f"{replicas} replica{'s' if replicas > 1 else ''}"
    cluster = BenchCluster(root, replicas, sync=not args.no_fsync)
    points: list[Point] = []
    connector = aiohttp.TCPConnector(limit=0, force_close=False)
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT)
    try:
        cluster.start()
        async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
            await cluster.wait_ready(session)
            buy = buy_request(cluster.frontend)
            await drive(session, buy, 16, 3.0, args.warmup)  # warm up connections, caches and code paths
            for clients in args.clients:
                points.append(await measure(session, cluster, config, "buy via frontend", buy, clients, args))
            points += await measure_lookups(session, cluster, config, args)
            if replicas > 1:
                down = f"{config}, a follower of each group down"
                for kind in GROUPS:
                    leader = await cluster.leader(session, kind)
                    follower = next(i for i in range(replicas) if i != leader)
                    cluster.killed.add(f"{kind}-{follower}")
                    cluster.kill(f"{kind}-{follower}")
                await asyncio.sleep(1.0)  # let the leaders notice (connection refused) before timing anything
                await drive(session, buy, 16, 2.0, args.warmup)
                points.append(await measure(session, cluster, down, "buy via frontend", buy, max(args.clients), args))
    finally:
        cluster.stop()
    return points


async def measure_lookups(session: aiohttp.ClientSession, cluster: BenchCluster, config: str,
                          args: argparse.Namespace) -> list[Point]:  # fmt: skip
    clients = max(args.clients)
    leader = await cluster.leader(session, "catalog")
    targets = [("leader", cluster.node("catalog", leader))]
    if cluster.replicas > 1:
        targets.append(("follower", cluster.node("catalog", next(i for i in range(cluster.replicas) if i != leader))))
    points = []
    for role, node in targets:
        for level in ("linearizable", "stale"):
            params = {"consistency": "stale"} if level == "stale" else None
            request = lookup_request(node.url + "/internal/books/{item}", cluster.secret_headers, params)
            points.append(await measure(session, cluster, config, f"lookup on catalog {role}, {level}", request, clients, args))
    request = lookup_request(cluster.frontend + "/lookup/{item}")
    points.append(await measure(session, cluster, config, "lookup via frontend, linearizable", request, clients, args))
    return points


def round_order(replicas: list[int], rounds: int) -> list[int]:
    """Cluster sizes in ABBA order (1, 3, 3, 1, ...): a machine whose load drifts during the run then
    weighs on every size alike, and the ratios stay fair."""
    return [r for n in range(rounds) for r in (replicas if n % 2 == 0 else replicas[::-1])]


def merge(points: list[Point]) -> list[Point]:
    """One point per (configuration, load, clients) over the rounds: requests and time summed, latencies
    pooled, CPU shares averaged over time."""
    merged: dict[tuple[str, str, int], Point] = {}
    for p in points:
        key = (p.config, p.what, p.clients)
        if key not in merged:
            merged[key] = Point(p.config, p.what, p.clients, 0, 0.0, [], Counter(), dict.fromkeys(GROUPS, 0), CpuShare())
        m = merged[key]
        for attr in ("cluster", "driver", "other"):
            total = getattr(m.cpu, attr) * m.elapsed + getattr(p.cpu, attr) * p.elapsed
            setattr(m.cpu, attr, total / (m.elapsed + p.elapsed))
        m.ops += p.ops
        m.elapsed += p.elapsed
        m.latencies = sorted(m.latencies + p.latencies)
        m.errors += p.errors
        m.elections = {k: m.elections[k] + p.elections[k] for k in GROUPS}
        m.election_log += p.election_log
    return list(merged.values())


async def run(args: argparse.Namespace) -> tuple[list[Point], list[Point]]:
    """(every point of every round, the points merged over rounds)."""
    points: list[Point] = []
    with tempfile.TemporaryDirectory(prefix="pygmy-tier-bench-") as tmp:
        for n, replicas in enumerate(round_order(args.replicas, args.rounds)):
            points += await bench_cluster(Path(tmp) / f"{n}-r{replicas}", replicas, args)
    return points, merge(points)


# -- report ----------------------------------------------------------------------------------------


def _table(title: str, columns: Sequence[str], rows: list[list[str]]) -> tuple[Table, list[str]]:
    """One table for the terminal (rich) and the same as markdown lines."""
    table = Table(title=title)
    for n, column in enumerate(columns):
        table.add_column(column, justify="left" if n < 2 else "right")
    for row in rows:
        table.add_row(*row)
    md = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    return table, md + [""]


def _find(points: list[Point], config: str, what: str, clients: int) -> Point | None:
    return next((p for p in points if p.config == config and p.what == what and p.clients == clients), None)


def headline(points: list[Point], clients: int) -> list[str]:
    """Ratios first, then the issue's goal next to what was measured."""
    one = _find(points, "1 replica", "buy via frontend", clients)
    three = _find(points, "3 replicas", "buy via frontend", clients)
    down = _find(points, "3 replicas, a follower of each group down", "buy via frontend", clients)
    lines = [f"### Ratios and goals (buys through the frontend, {clients} concurrent clients, fsync on)", ""]
    if one and three:
        ratio = three.per_s / one.per_s
        lines.append(f"- 3 replicas / 1 replica, buys/s: **{ratio:.2f}** ({three.per_s:,.0f} / {one.per_s:,.0f}); "
                     f"goal >= 0.70 — {'met' if ratio >= 0.70 else 'not met'}")  # fmt: skip
    if three and down:
        lines.append(f"- a follower of each group down / all 3 up, buys/s: **{down.per_s / three.per_s:.2f}** "
                     f"({down.per_s:,.0f} / {three.per_s:,.0f})")  # fmt: skip
    for role in ("leader", "follower"):
        lin = _find(points, "3 replicas", f"lookup on catalog {role}, linearizable", clients)
        stale = _find(points, "3 replicas", f"lookup on catalog {role}, stale", clients)
        if lin and stale:
            lines.append(f"- stale / linearizable lookups/s on the catalog {role} (3 replicas): "
                         f"**{stale.per_s / lin.per_s:.2f}** ({stale.per_s:,.0f} / {lin.per_s:,.0f})")  # fmt: skip
    if three:
        met = three.per_s >= 2000 and three.p99_ms < 50
        lines.append(f"- goal \"2,000 replicated buys/s or more with p99 under 50 ms on a quiet machine\": measured "
                     f"{three.per_s:,.0f} buys/s, p99 {three.p99_ms:.1f} ms (3 replicas) — {'met' if met else 'not met'} "
                     f"(buys/s {'met' if three.per_s >= 2000 else 'not met'}, p99 {'met' if three.p99_ms < 50 else 'not met'})")  # fmt: skip
    elections = sum(sum(p.elections.values()) for p in points)
    lines.append(f"- elections during the load points: {elections}")
    return lines + [""]


def per_round(rounds: list[Point], clients: int) -> str:
    """The headline buys/s of each round on its own, so the run-to-run spread shows."""
    lines = ["", f"Buys/s at {clients} clients in each round, in the order run (the table pools them):", ""]
    for p in rounds:
        if p.what == "buy via frontend" and p.clients == clients:
            lines.append(f"- {p.config}: {p.per_s:,.0f} buys/s, p99 {p.p99_ms:.1f} ms, other work {p.cpu.other:.2f} cores")
    return "\n".join(lines) + "\n"


def render(points: list[Point], args: argparse.Namespace, command: str) -> tuple[list[Table], str]:
    columns = ("configuration", "load", "clients", "per s", "p50 ms", "p99 ms", "elections cat/ord", "errors",
               "cluster cpu ms/op", "cpu cores: cluster / driver / other")  # fmt: skip

    def row(p: Point) -> list[str]:
        errors = ", ".join(f"{k}×{v}" for k, v in p.errors.most_common()) or "0"
        return [p.config, p.what, str(p.clients), f"{p.per_s:,.0f}", f"{p.p50_ms:.2f}", f"{p.p99_ms:.2f}",
                f"{p.elections['catalog']} / {p.elections['order']}", errors, f"{p.cpu_ms_per_op:.2f}",
                f"{p.cpu.cluster:.2f} / {p.cpu.driver:.2f} / {p.cpu.other:.2f}"]  # fmt: skip

    buys = [row(p) for p in points if p.what.startswith("buy")]
    lookups = [row(p) for p in points if p.what.startswith("lookup")]
    parts = [
        _table("Buys: POST /buy/{item} through the frontend (latency = client send -> answer)", columns, buys),
        _table("Lookups: catalog replica GET /internal/books/{item} directly, and GET /lookup/{item} via the frontend",
               columns, lookups),
    ]  # fmt: skip
    load = os.getloadavg()
    other = max((p.cpu.other for p in points), default=0.0)
    shared = other > 0.2
    md = [
        "# Tier benchmark: replicated buys and lookups, end to end",
        "",
        f"Produced by `{command}` at {time.strftime('%Y-%m-%d %H:%M %Z')} on {os.cpu_count()} cores; "
        f"load average at the end {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1 / 5 / 15 min).",
        "",
        ("**Shared machine.** Other work (test suites of other helpers) ran on the same cores during this run: "
         f"up to {other:.2f} cores of CPU went to processes that are neither the cluster nor the driver (column "
         "*other*). Absolute figures are lower than a quiet machine would give and vary from run to run; the "
         "ratios, measured in the same run, compare like with like and are quoted first."
         if shared else
         f"The machine was quiet: at most {other:.2f} cores went to other processes during a load point."),
        "",
        *headline(points, max(args.clients)),
        "How: each configuration is a fresh cluster (temporary data dir, free loopback ports, a configuration "
        "written by the benchmark, one `pygmy serve KIND ID` process per node, all on 127.0.0.1), fsync on "
        f"(`[raft] sync = true`), default Raft timing (10 ms ticks, heartbeat 30 ms, election 150-300 ms). "
        f"The catalog holds {BOOKS} books with {STOCK:,} copies each; each request picks one at random. A buy "
        "is POST /buy/{item} with a fresh Idempotency-Key: at least three commits across the two groups (order "
        "begin, catalog decrement, order settle), each an fsynced Raft entry and an fsynced SQLite commit per "
        "replica. Each configuration runs --rounds times, each on a fresh cluster, in ABBA order (1, 3, 3, 1 "
        "replicas), and the table pools the rounds (requests and time summed, latencies pooled). "
        "Each client sends its next request when the previous one is answered; a load point ends after "
        f"{args.duration:g} s or {args.max_ops:,} requests. \"Down\" = kill -9 of one follower of each group, "
        "then the same buys at the same concurrency. Lookups go straight to a catalog replica's "
        "GET /internal/books/{item} with the cluster secret, with and without `?consistency=stale` (the frontend "
        "has no passthrough for the read level; its GET /lookup always asks for a linearizable read, measured "
        "too). Elections = each group's highest term over its live replicas after minus before the point. "
        "Cluster cpu ms/op = the cluster's CPU time during the point / requests answered. "
        "CPU = cores' worth of CPU time during the point (from /proc): the cluster's processes, the driver (one "
        "Python asyncio process with aiohttp, on the same machine) and everything else.",
        "",
    ]
    tables = []
    for table, lines in parts:
        if table.row_count:
            tables.append(table)
            md += lines
    for p in points:
        if p.election_log:
            md += [f"Election during *{p.config}, {p.what}, {p.clients} clients* — the nodes' log lines:", "", "```",
                   *p.election_log, "```", ""]  # fmt: skip
    return tables, "\n".join(md)


def _label(config: str) -> str:
    return config.replace(", a follower of each group down", ",\n1 follower\nper group down")


def plot(points: list[Point], path: Path) -> None:
    """Buys/s and p99 per configuration and concurrency; lookups/s per target and read level."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    buys = [p for p in points if p.what.startswith("buy")]
    lookups = [p for p in points if p.what.startswith("lookup")]
    fig, axes = plt.subplots(1, 3, figsize=(16, 5))
    labels = [_label(p.config) + f"\n{p.clients} clients" for p in buys]
    colors = ["tab:orange" if "down" in p.config else "tab:blue" if p.config.startswith("3") else "tab:gray" for p in buys]
    axes[0].bar(range(len(buys)), [p.per_s for p in buys], color=colors)
    axes[0].axhline(2000, color="tab:red", linestyle="--", linewidth=1, label="goal 2,000 buys/s")
    axes[0].set_ylabel("buys/s")
    axes[1].bar(range(len(buys)), [p.p99_ms for p in buys], color=colors)
    axes[1].axhline(50, color="tab:red", linestyle="--", linewidth=1, label="goal p99 50 ms")
    axes[1].set_ylabel("p99 buy latency, ms")
    for ax in axes[:2]:
        ax.set_xticks(range(len(buys)), labels, fontsize=7)
        ax.legend(fontsize=8)
    lookup_labels = [p.config + "\n" + p.what.removeprefix("lookup ").replace(", ", ",\n") for p in lookups]
    lookup_colors = ["tab:green" if "stale" in p.what else "tab:purple" for p in lookups]
    axes[2].barh(range(len(lookups)), [p.per_s for p in lookups], color=lookup_colors)
    axes[2].set_yticks(range(len(lookups)), lookup_labels, fontsize=7)
    axes[2].invert_yaxis()
    axes[2].set_xlabel(f"lookups/s, {max(p.clients for p in lookups) if lookups else 0} clients")
    fig.suptitle("Pygmy tiers on loopback, fsync on (one run; shared 2-core machine: compare ratios)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per load point (default 8)")
    parser.add_argument("--max-ops", type=int, default=100_000, help="requests per load point at most (default 100,000)")
    parser.add_argument("--clients", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64],
                        help="concurrent clients for the buy points, comma-separated (default 1,64; the largest "
                             "is used for lookups and the follower-down point)")  # fmt: skip
    parser.add_argument("--replicas", type=lambda s: [int(x) for x in s.split(",")], default=[1, 3],
                        help="replicas per group, one cluster each, comma-separated odd numbers (default 1,3)")
    parser.add_argument("--rounds", type=int, default=2,
                        help="fresh clusters per size, in ABBA order, pooled in the report (default 2)")
    parser.add_argument("--warmup", type=int, default=300, help="buys before the first load point (default 300)")
    parser.add_argument("--no-fsync", action="store_true", help="[raft] sync = false (to see what fsync costs)")
    parser.add_argument("--out", default="docs/tier-benchmark.md", help="markdown report (+ .png beside it); '-' for none")
    args = parser.parse_args(argv)
    if any(r < 1 or r % 2 == 0 for r in args.replicas):
        parser.error("--replicas takes odd numbers")
    # SIGTERM as Ctrl-C: unwinds through every cluster's stop() (and the atexit net) instead of dying on the spot.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    command = "python -m benchmarks.tier_bench" + ("" if not argv else " " + " ".join(argv))
    with contextlib.suppress(ImportError):
        import uvloop  # the driver must not be the bottleneck: use the event loop the nodes use

        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    rounds, points = asyncio.run(run(args))
    tables, markdown = render(points, args, command)
    markdown += per_round(rounds, max(args.clients))
    console = Console(width=max(Console().width, 160))  # the tables have nine columns
    for table in tables:
        console.print(table)
    for line in headline(points, max(args.clients)):
        console.print(line.replace("**", ""), highlight=False)
    if args.out != "-":
        out = Path(args.out)
        plot(points, out.with_suffix(".png"))
        markdown += f"\n![buys/s, p99 and lookups/s per configuration]({out.with_suffix('.png').name})\n"
        previous = out.read_text() if out.exists() else ""
        if NOTES_MARKER in previous:  # hand-written notes below the marker survive a new run
            markdown += "\n" + previous[previous.index(NOTES_MARKER):]
        out.write_text(markdown)
        console.print(f"written to {out} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
