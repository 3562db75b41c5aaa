"""Benchmark the frontend cache: lookups and searches with the cache on and off, beside a hello-world route
of the same server stack, and buy latency with and without invalidation (docs/cache-benchmark.md).

    python -m benchmarks.cache_bench                 # make bench-cache
    python -m benchmarks.cache_bench --duration 2

Run from the repository root. In one run it starts a hello-world server (benchmarks/hello_server.py) and
two real clusters (tests/support/cluster.py: one process per node, 3 replicas per group, fsync on), one
with the cache on and one with `[cache] enabled = false`, and measures each point for --duration seconds
or --max-ops requests, whichever comes first, with one asyncio driver process at concurrency 1 and 64.
Buys alternate between the two clusters request by request (twice the duration, shared by both), so
with and without invalidation are measured at the same moments.
Ratios are against the hello-world route measured in the same run. Every process is stopped by PID.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import aiohttp
import requests
from rich.console import Console
from rich.table import Table

from tests.support.cluster import LIVE, Cluster, free_ports

BOOKS = 64
STOCK = 10**9


@dataclass
class Point:
    name: str
    concurrency: int
    ops: int
    errors: int
    seconds: float
    latencies: list[float]

    @property
    def rate(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


async def _load(name: str, concurrency: int, duration: float, max_ops: int,
                request: Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]) -> Point:
    """`concurrency` workers send `request` back to back until the time or the count runs out."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        end = time.monotonic() + duration
        sent = 0

        async def worker() -> None:
            nonlocal errors, sent
            while time.monotonic() < end and sent < max_ops:
                sent += 1
                start = time.perf_counter()
                try:
                    status = await request(session)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                if status == 200:
                    latencies.append(time.perf_counter() - start)
                else:
                    errors += 1

        began = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.monotonic() - began
    return Point(name, concurrency, len(latencies), errors, seconds, latencies)


def _request(method: str, url: Callable[[], str], buy: bool = False) -> Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]:
    """One request to a fresh `url()`; a buy carries a fresh Idempotency-Key."""
    async def go(session: aiohttp.ClientSession) -> int:
        headers = {"Idempotency-Key": uuid.uuid4().hex} if buy else None
        async with session.request(method, url(), headers=headers) as r:
            await r.read()
            return r.status
    return go  # type: ignore[return-value]


def _lookup(base: str) -> Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]:
    return _request("GET", lambda: f"{base}/lookup/{random.randint(1, BOOKS)}")


def _search(base: str) -> Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]:
    return _request("GET", lambda: f"{base}/search/{random.choice(['ds', 'gs'])}?limit=10")


def _buy(base: str) -> Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]:
    return _request("POST", lambda: f"{base}/buy/{random.randint(1, BOOKS)}", buy=True)


def _catalog_file(root: Path) -> Path:
    books = [{"id": i, "title": f"Benchmark volume {i}", "topic": "ds" if i % 2 else "gs", "stock": STOCK, "cost": 10.0}
             for i in range(1, BOOKS + 1)]
    path = root / "books.json"
    path.write_text(json.dumps(books))
    return path


def _warm(base: str) -> None:
    """Every key once, so the cached points measure hits (and the lease is held)."""
    deadline = time.monotonic() + 30
    while requests.get(f"{base}/lookup/1", timeout=5).status_code != 200 and time.monotonic() < deadline:
        time.sleep(0.2)
    for i in range(1, BOOKS + 1):
        requests.get(f"{base}/lookup/{i}", timeout=5)
    for topic in ("ds", "gs"):
        requests.get(f"{base}/search/{topic}?limit=10", timeout=5)
    time.sleep(1.0)


def _hello(root: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_ports(1)[0]
    log = open(root / "hello.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "benchmarks.hello_server", str(port)], stdout=log, stderr=subprocess.STDOUT)
    LIVE[proc.pid] = proc
    url = f"http://127.0.0.1:{port}/hello"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            requests.get(url, timeout=1)
            return proc, url
        except requests.RequestException:
            time.sleep(0.1)
    raise RuntimeError("the hello-world server did not start")


async def _alternating(names: dict[str, Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]], concurrency: int,
                      duration: float, max_ops: int) -> list[Point]:
    """Like `_load`, but each worker alternates between the requests in `names` (one per cluster), so the
    clusters are measured at the same moments under the same load from the rest of the machine."""
    labels = list(names)
    latencies: dict[str, list[float]] = {label: [] for label in labels}
    errors = dict.fromkeys(labels, 0)
    connector = aiohttp.TCPConnector(limit=concurrency * len(labels))
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=10)) as session:
        end = time.monotonic() + duration
        sent = 0

        async def worker(first: int) -> None:
            nonlocal sent
            turn = first
            while time.monotonic() < end and sent < max_ops:
                sent += 1
                label = labels[turn % len(labels)]
                turn += 1
                start = time.perf_counter()
                try:
                    status = await names[label](session)
                except (aiohttp.ClientError, asyncio.TimeoutError):
                    status = 0
                if status == 200:
                    latencies[label].append(time.perf_counter() - start)
                else:
                    errors[label] += 1

        began = time.monotonic()
        await asyncio.gather(*(worker(i) for i in range(concurrency)))
        seconds = time.monotonic() - began
    return [Point(label, concurrency, len(latencies[label]), errors[label], seconds, latencies[label]) for label in labels]


def run(duration: float, max_ops: int) -> list[Point]:
    points: list[Point] = []

    def measure(name: str, c: int, request: Callable[[aiohttp.ClientSession], "asyncio.Future[int]"]) -> None:
        point = asyncio.run(_load(name, c, duration, max_ops, request))
        print(f"  {name} at {c}: {point.rate:.0f}/s", flush=True)
        points.append(point)

    with tempfile.TemporaryDirectory(prefix="pygmy-cache-bench-") as tmp:
        root = Path(tmp)
        books = _catalog_file(root)
        hello, hello_url = _hello(root)
        clusters = {enabled: Cluster(root / f"cache-{'on' if enabled else 'off'}", catalog_file=books,
                                     cache={"enabled": enabled}) for enabled in (True, False)}
        try:
            for cluster in clusters.values():
                cluster.start()
                _warm(cluster.frontend_url)
            for enabled, cluster in clusters.items():
                label = "on" if enabled else "off"
                for c in (1, 64):
                    if enabled:
                        measure("hello-world", c, _request("GET", lambda: hello_url))
                    measure(f"lookup, cache {label}", c, _lookup(cluster.frontend_url))
                    measure(f"search, cache {label}", c, _search(cluster.frontend_url))
            # Buys with and without invalidation alternate request by request between the two clusters
            # (both running): run one after the other, the machine's other load moved them apart by more
            # than the invalidation costs.
            for c in (1, 64):
                buys = {f"buy, cache {'on' if e else 'off'}": _buy(cl.frontend_url) for e, cl in clusters.items()}
                for point in asyncio.run(_alternating(buys, c, 2 * duration, 2 * max_ops)):
                    print(f"  {point.name} at {c} (alternating): {point.rate:.0f}/s", flush=True)
                    points.append(point)
        finally:
            for cluster in clusters.values():
                cluster.stop()
            hello.terminate()
            hello.wait(10)
            LIVE.pop(hello.pid, None)
    return points


def report(points: list[Point], console: Console) -> None:
    hello = {p.concurrency: p.rate for p in points if p.name == "hello-world"}
    table = Table(title="Frontend cache (one driver process, loopback, 3 replicas per group)")
    for col in ("point", "clients", "req/s", "vs hello-world", "p50 ms", "p99 ms", "errors"):
        table.add_column(col, justify="left" if col == "point" else "right")
    for p in points:
        ratio = f"{p.rate / hello[p.concurrency]:.2f}" if hello.get(p.concurrency) else "-"
        table.add_row(p.name, str(p.concurrency), f"{p.rate:.0f}", ratio, f"{p.pct(0.5):.2f}", f"{p.pct(0.99):.2f}", str(p.errors))
    console.print(table)
    by = {(p.name, p.concurrency): p for p in points}
    for c in (1, 64):
        on, off = by.get(("buy, cache on", c)), by.get(("buy, cache off", c))
        if on and off:
            console.print(f"buy p50 at {c} client(s): {on.pct(0.5):.2f} ms with invalidation vs {off.pct(0.5):.2f} ms "
                          f"without ({(on.pct(0.5) / off.pct(0.5) - 1) * 100:+.1f}%)")
        lk = by.get(("lookup, cache on", c))
        if lk and hello.get(c):
            console.print(f"cached lookups at {c} client(s): {lk.rate / hello[c]:.2f} of the hello-world route's req/s (goal 0.70)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per load point (default 4)")
    parser.add_argument("--max-ops", type=int, default=200_000, help="requests per load point at most")
    args = parser.parse_args()
    report(run(args.duration, args.max_ops), Console(width=120))


if __name__ == "__main__":
    main()
