"""Benchmark Pygmy's Raft against PySyncObj 0.3.17: 3 real processes each on loopback, driven the same way.

    python -m benchmarks.raft_bench                 # everything, writes docs/raft-benchmark.md
    python -m benchmarks.raft_bench --duration 3 --trials 3 --out -

Run from the repository root (`make bench` does): it drives the members through the test harness in
tests/support/ (`LocalGroup`, `raft_member`).

For each system: committed proposals/s and p50/p99 latency (client send -> applied result) at 1 and 64
concurrent proposers, elections during the load (leader term before vs after), and leader failover after
kill -9 of the leader (median over trials). Ours is measured until a survivor commits a new proposal;
PySyncObj both until the survivors agree on a leader and until a new proposal commits.

PySyncObj runs tuned: 10 ms ticks, append-entries every 30 ms, batching on, dynamic membership off, its
file journal (which never fsyncs), the same 150-300 ms election timeout as ours and reconnection after
0.5 s (not 5 s). On a follower it answers "not_leader" as ours does, instead of forwarding. Both are driven
through the same pipelined client protocol (tests/support/raft_member.py), the command an increment of a key.

Also (and alone with `--micro`) the micro-benchmarks behind two choices: the storage format (WAL file vs
SQLite, fsync cost, batching) and the transport (framed TCP stream vs aiohttp keep-alive POSTs).
Every loop here is bounded in count and time; all traffic stays on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
from rich.console import Console
from rich.table import Table

from pygmy.raft.core import Status
from pygmy.raft.messages import AppendEntries, AppendEntriesResponse, Entry, HardState, Role
from pygmy.raft.storage import RaftStorage
from pygmy.raft.transport import pack_frame, read_frame
from tests.support.raft_cluster import MEMBER_ENTRY, LocalGroup
from tests.support.raft_member import encode_status, parse_peers

SYNCOBJ_ENTRY = ("-m", "benchmarks.raft_bench", "syncobj-node")
MAX_OPS_PER_POINT = 400_000
NOTES_MARKER = "<!-- notes: kept when the benchmark rewrites this file -->"


@dataclass
class LoadResult:
    system: str
    proposers: int
    commits_per_s: float
    p50_ms: float
    p99_ms: float
    elections: int
    errors: int


@dataclass
class FailoverResult:
    system: str
    until: str
    seconds: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds) if self.seconds else float("nan")


# -- driving a group --------------------------------------------------------------------------


def incr(key: str) -> bytes:
    return msgspec.msgpack.encode(["incr", key, 1])


async def measure_load(system: str, group: LocalGroup, proposers: int, duration: float) -> LoadResult:
    """`proposers` clients propose back to back at the leader for `duration` seconds (or MAX_OPS_PER_POINT)."""
    leader = await group.leader()
    client = await group.client(leader)
    term_before = (await client.status())["term"]
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + duration

    async def proposer(n: int) -> None:
        nonlocal errors
        command = incr(f"k{n}")
        while time.perf_counter() < stop_at and len(latencies) < MAX_OPS_PER_POINT:
            start = time.perf_counter()
            code, _, _ = await client.call("propose", command)
            if code == "ok":
                latencies.append(time.perf_counter() - start)
            else:
                errors += 1
                await asyncio.sleep(0.01)

    started = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(proposer(n) for n in range(proposers))), duration + 30)
    elapsed = time.perf_counter() - started
    statuses = await group.statuses()
    term_after = max(s["term"] for s in statuses.values())
    latencies.sort()
    return LoadResult(
        system=system,
        proposers=proposers,
        commits_per_s=len(latencies) / elapsed,
        p50_ms=_percentile(latencies, 0.50) * 1000,
        p99_ms=_percentile(latencies, 0.99) * 1000,
        elections=term_after - term_before,
        errors=errors,
    )


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


async def measure_failover(group: LocalGroup, trials: int) -> tuple[list[float], list[float]]:
    """kill -9 the leader `trials` times; return the seconds until the survivors agree on a new leader
    and until a new proposal commits, both timed from the kill. The killed member restarts between trials."""
    agree: list[float] = []
    commit: list[float] = []
    for _ in range(trials):
        leader = await group.leader(timeout=30)
        await group.propose(incr("failover"), timeout=30)
        killed_at = time.perf_counter()
        group.kill(leader)

        async def agreed() -> None:
            await group.leader(timeout=30)
            agree.append(time.perf_counter() - killed_at)

        async def committed() -> None:
            await group.propose(incr("failover"), timeout=30)  # at the survivors, until one commits it
            commit.append(time.perf_counter() - killed_at)

        await asyncio.gather(agreed(), committed())
        group.start(leader)
        await caught_up(group)
    return agree, commit


async def caught_up(group: LocalGroup, timeout: float = 30.0) -> None:
    """Wait until every member follows one leader and has applied the same index (so the next kill
    finds a connected, complete group)."""
    deadline = time.monotonic() + timeout
    await group.leader(timeout=timeout)
    await group.propose(incr("catch-up"), timeout=timeout)
    while time.monotonic() < deadline:
        statuses = await group.statuses()
        if len(statuses) == len(group.ids) and len({s["applied"] for s in statuses.values()}) == 1:
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the group did not catch up within {timeout} s")


# -- PySyncObj, driven through the same client protocol ---------------------------------------


def syncobj_node(argv: Sequence[str]) -> None:
    """One PySyncObj member with an increment-a-key state machine behind pygmy's client port."""
    from pysyncobj import SyncObj, SyncObjConf, replicated  # a dev dependency: imported only here

    parser = argparse.ArgumentParser()
    for name in ("--id", "--client-port"):
        parser.add_argument(name, type=int, required=True)
    for name in ("--peers", "--data-dir"):
        parser.add_argument(name, required=True)
    args, _ = parser.parse_known_args(argv)
    peers = parse_peers(args.peers)
    address = {i: f"{h}:{p}" for i, (h, p) in peers.items()}
    node_of = {a: i for i, a in address.items()}
    Path(args.data_dir).mkdir(parents=True, exist_ok=True)

    class Counter(SyncObj):  # type: ignore[misc]
        def __init__(self) -> None:
            conf = SyncObjConf(
                autoTickPeriod=0.01,
                appendEntriesPeriod=0.03,
                appendEntriesUseBatch=True,
                dynamicMembershipChange=False,
                raftMinTimeout=0.15,
                raftMaxTimeout=0.3,
                connectionRetryTime=0.5,  # default 5 s: a restarted member would stay unheard for seconds
                journalFile=os.path.join(args.data_dir, "journal"),
                fullDumpFile=os.path.join(args.data_dir, "dump"),
            )
            others = [a for i, a in address.items() if i != args.id]
            super().__init__(address[args.id], others, conf)
            self.values: dict[str, int] = {}

        @replicated
        def incr(self, key: str, n: int) -> int:
            self.values[key] = self.values.get(key, 0) + n
            return self.values[key]

    async def serve() -> None:
        counter = Counter()
        loop = asyncio.get_running_loop()

        def status() -> bytes:
            s = counter.getStatus()
            leader = node_of.get(str(s["leader"].address)) if s["leader"] is not None else None
            role = {0: Role.FOLLOWER, 1: Role.CANDIDATE, 2: Role.LEADER}[s["state"]]
            return encode_status(Status(
                id=args.id, role=role, term=s["raft_term"], leader=leader, commit=s["commit_idx"],
                applied=s["last_applied"], last_index=0, snapshot_index=0,
            ))  # fmt: skip

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            def answer(request_id: int, code: str, payload: bytes, leader: int | None) -> None:
                writer.write(pack_frame(msgspec.msgpack.encode([request_id, code, payload, leader])))

            try:
                while True:
                    request_id, op, payload = msgspec.msgpack.decode(await read_frame(reader))
                    if op == "status":
                        answer(request_id, "ok", status(), None)
                        continue
                    if not counter._isLeader():
                        # Refuse like Pygmy does rather than let PySyncObj forward (possibly to a dead leader).
                        leader = counter._getLeader()
                        answer(request_id, "not_leader", b"", node_of.get(str(leader.address)) if leader else None)
                        continue
                    _, key, n = msgspec.msgpack.decode(payload)

                    def done(result: object, error: object, request_id: int = request_id) -> None:
                        code, body = ("ok", msgspec.msgpack.encode(result)) if error == 0 else ("dropped", b"")
                        loop.call_soon_threadsafe(answer, request_id, code, body, None)

                    counter.incr(key, n, callback=done)
            except (OSError, asyncio.IncompleteReadError):
                writer.close()

        await asyncio.start_server(handle, "127.0.0.1", args.client_port)
        print(f"ready {args.id} pid {os.getpid()}", flush=True)
        await asyncio.Event().wait()  # until the benchmark terminates this process

    asyncio.run(serve())


# -- storage micro-benchmark -------------------------------------------------------------------


def measure_storage(batches: int = 500) -> list[tuple[str, int, float, float]]:
    """(format, entries per save, µs per save, entries/s) for the WAL file with and without fsync, and
    SQLite in WAL mode with synchronous=FULL, at 1 and 64 entries of 32 bytes per save."""
    rows = []
    for batch in (1, 64):
        for name in ("wal file, fdatasync", "wal file, no sync", "sqlite wal, synchronous=FULL"):
            with tempfile.TemporaryDirectory(dir=".") as d:
                save = _sqlite_saver(d) if name.startswith("sqlite") else _wal_saver(d, sync="no sync" not in name)
                started = time.perf_counter()
                for b in range(batches):
                    save(b * batch + 1, batch)
                elapsed = time.perf_counter() - started
            rows.append((name, batch, elapsed / batches * 1e6, batches * batch / elapsed))
    return rows


def _wal_saver(directory: str, *, sync: bool):  # type: ignore[no-untyped-def]
    storage = RaftStorage(directory, sync=sync)

    def save(first: int, count: int) -> None:
        entries = [Entry(term=1, index=i, data=b"x" * 32) for i in range(first, first + count)]
        storage.save(HardState(term=1, vote=1, commit=first + count - 1), entries)

    return save


def _sqlite_saver(directory: str):  # type: ignore[no-untyped-def]
    db = sqlite3.connect(os.path.join(directory, "raft.db"), isolation_level=None)
    db.execute("pragma journal_mode=wal")
    db.execute("pragma synchronous=full")
    db.execute("create table log(idx integer primary key, term int, data blob)")
    db.execute("create table hard_state(id int primary key, term int, vote int, commit_index int)")

    def save(first: int, count: int) -> None:
        db.execute("begin")
        db.executemany("insert or replace into log values(?,?,?)", [(i, 1, b"x" * 32) for i in range(first, first + count)])
        db.execute("insert or replace into hard_state values(0,1,1,?)", (first + count - 1,))
        db.execute("commit")

    return save


# -- transport micro-benchmark -----------------------------------------------------------------


async def measure_transport(round_trips: int = 2000) -> list[tuple[str, float]]:
    """(transport, µs per round trip): an AppendEntries with one 32-byte entry out and its
    acknowledgement back, one at a time, over our framed TCP stream and over aiohttp keep-alive POSTs."""
    from aiohttp import ClientSession, web

    message = AppendEntries(1, 2, 1, 0, 0, (Entry(term=1, index=1, data=b"x" * 32),), 0)
    ack = AppendEntriesResponse(2, 1, 1, True, 1)
    rows = []

    async def stream_echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                msgspec.msgpack.decode(await read_frame(reader), type=list[AppendEntries])
                writer.write(pack_frame(msgspec.msgpack.encode([ack])))
        except (OSError, asyncio.IncompleteReadError):
            writer.close()

    server = await asyncio.start_server(stream_echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    started = time.perf_counter()
    for _ in range(round_trips):
        writer.write(pack_frame(msgspec.msgpack.encode([message])))
        msgspec.msgpack.decode(await read_frame(reader), type=list[AppendEntriesResponse])
    rows.append(("TCP stream, length-prefixed msgpack", (time.perf_counter() - started) / round_trips * 1e6))
    writer.close()
    server.close()

    async def http_echo(request: web.Request) -> web.Response:
        msgspec.msgpack.decode(await request.read(), type=list[AppendEntries])
        return web.Response(body=msgspec.msgpack.encode([ack]))

    app = web.Application()
    app.router.add_post("/raft", http_echo)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    async with ClientSession() as session:
        url = f"http://127.0.0.1:{http_port}/raft"
        started = time.perf_counter()
        for _ in range(round_trips):
            async with session.post(url, data=msgspec.msgpack.encode([message])) as response:
                msgspec.msgpack.decode(await response.read(), type=list[AppendEntriesResponse])
        rows.append(("HTTP/1.1 keep-alive POST (aiohttp)", (time.perf_counter() - started) / round_trips * 1e6))
    await runner.cleanup()
    return rows


# -- the whole run -----------------------------------------------------------------------------


@dataclass(frozen=True)
class System:
    name: str
    entry: tuple[str, ...]
    extra: tuple[str, ...] = ()
    failover: bool = True


SYSTEMS = (
    System("pygmy", MEMBER_ENTRY),
    System("pygmy, no fsync", MEMBER_ENTRY, ("--no-fsync",), failover=False),
    System("pysyncobj", SYNCOBJ_ENTRY),
)


async def run_system(system: System, args: argparse.Namespace, base: Path) -> tuple[list[LoadResult], list[FailoverResult]]:
    group = LocalGroup(3, base / system.name.replace(" ", "").replace(",", "-"), entry=system.entry, extra=system.extra)
    loads: list[LoadResult] = []
    failovers: list[FailoverResult] = []
    try:
        group.start_all()
        await group.leader(timeout=30)
        for _ in range(200):  # warm up connections and code paths
            await group.propose(incr("warmup"), timeout=30)
        for proposers in args.proposers:
            loads.append(await measure_load(system.name, group, proposers, args.duration))
        if system.failover and args.trials:
            agree, commit = await measure_failover(group, args.trials)
            failovers.append(FailoverResult(system.name, "a new leader commits", commit))
            failovers.append(FailoverResult(system.name, "survivors agree on a leader", agree))
    finally:
        group.stop()
    return loads, failovers


def _table(title: str, columns: Sequence[str], rows: list[list[str]]) -> tuple[Table, list[str]]:
    """One table for the terminal (rich) and the same as markdown lines."""
    table = Table(title=title)
    for n, column in enumerate(columns):
        table.add_column(column, justify="left" if n == 0 else "right")
    for row in rows:
        table.add_row(*row)
    md = [f"### {title}", "", "| " + " | ".join(columns) + " |", "|---" * len(columns) + "|"]
    md += ["| " + " | ".join(row) + " |" for row in rows]
    return table, md + [""]


def _goals(loads: list[LoadResult], failovers: list[FailoverResult]) -> list[str]:
    """The issue's goals, each with the measured figure and whether it was met."""
    ours = next((r for r in loads if r.system == "pygmy" and r.proposers == 64), None)
    theirs = next((r for r in loads if r.system == "pysyncobj" and r.proposers == 64), None)
    failover = next((f for f in failovers if f.system == "pygmy" and f.until == "a new leader commits"), None)
    lines = ["### Goals (64 concurrent proposers, fsync on)", ""]
    if ours and theirs:
        ratio = ours.commits_per_s / theirs.commits_per_s
        lines.append(f"- commits/s >= 3x PySyncObj: {ratio:.1f}x — {'met' if ratio >= 3 else 'NOT met'}")
    if ours:
        lines.append(f"- p99 commit latency < 5 ms: {ours.p99_ms:.2f} ms — {'met' if ours.p99_ms < 5 else 'NOT met'}")
        lines.append(f"- no election during the run: {ours.elections} — {'met' if ours.elections == 0 else 'NOT met'}")
    if failover:
        met = "met" if failover.median < 0.5 else "NOT met"
        lines.append(f"- failover (kill -9 of the leader until a new leader commits) median < 0.5 s: {failover.median:.3f} s — {met}")
    return lines + [""]


def render(
    loads: list[LoadResult],
    failovers: list[FailoverResult],
    storage: list[tuple[str, int, float, float]],
    transport: list[tuple[str, float]],
    command: str,
) -> tuple[list[Table], str]:
    """Rich tables for the terminal and the same figures as a markdown report."""
    theirs = {r.proposers: r.commits_per_s for r in loads if r.system == "pysyncobj"}
    load_rows = [
        [r.system, str(r.proposers), f"{r.commits_per_s:,.0f}", f"{r.p50_ms:.2f}", f"{r.p99_ms:.2f}",
         str(r.elections), str(r.errors),
         f"{r.commits_per_s / theirs[r.proposers]:.1f}x" if r.system != "pysyncobj" and r.proposers in theirs else ""]
        for r in loads
    ]  # fmt: skip
    fail_rows = [
        [f.system, f.until, f"{f.median:.3f}", f"{min(f.seconds, default=float('nan')):.3f}",
         f"{max(f.seconds, default=float('nan')):.3f}", str(len(f.seconds))]
        for f in failovers
    ]  # fmt: skip
    parts = [
        _table("Commits, 3 processes on loopback (latency = client send -> applied result)",
               ("system", "proposers", "commits/s", "p50 ms", "p99 ms", "elections", "errors", "ours/theirs"),
               load_rows),
        _table("Leader failover after kill -9 of the leader", ("system", "until", "median s", "min s", "max s", "trials"),
               fail_rows),
        _table("Storage: one save() per Ready, 32-byte entries", ("format", "entries/save", "µs/save", "entries/s"),
               [[name, str(batch), f"{micros:.0f}", f"{rate:,.0f}"] for name, batch, micros, rate in storage]),
        _table("Transport: one AppendEntries and its ack, one at a time, in one process", ("transport", "µs/round trip"),
               [[name, f"{micros:.0f}"] for name, micros in transport]),
    ]  # fmt: skip
    md = [
        "# Raft benchmark: Pygmy vs PySyncObj 0.3.17",
        "",
        f"Produced by `{command}` at {time.strftime('%Y-%m-%d %H:%M %Z')} on {os.cpu_count()} cores "
        "(shared with other work: figures vary from run to run; the storage table shows what fsync cost then).",
        "",
        "Setup: 3 server processes per system on 127.0.0.1 and one driver process; each proposer sends an "
        "increment, waits for the applied result, repeats. Pygmy: fsync on, 10 ms ticks, heartbeat 30 ms, "
        "election timeout 150-300 ms, pre-vote and check-quorum. PySyncObj: tick 10 ms, append-entries every "
        "30 ms, batching on, dynamic membership off, election timeout 150-300 ms, reconnect after 0.5 s, its "
        "journal file (never fsynced), no password (it encrypts with `cryptography`, not installed); a "
        "follower answers not_leader instead of forwarding. Elections = leader term after minus before the "
        "load point. Failover: kill -9 of the leader, timed until the survivors agree on a new leader and "
        "until a new proposal commits; the killed member restarts and catches up before the next trial.",
        "",
        *_goals(loads, failovers),
    ]
    tables = []
    for table, lines in parts:
        if table.row_count:
            tables.append(table)
            md += lines
    return tables, "\n".join(md)


def plot(loads: list[LoadResult], path: Path) -> None:
    """Commits/s and p99 latency per system and number of proposers, side by side, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # no display: write the file only
    import matplotlib.pyplot as plt

    systems = list(dict.fromkeys(r.system for r in loads))
    points = sorted({r.proposers for r in loads})
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    width = 0.8 / len(systems)
    for n, system in enumerate(systems):
        by_point = {r.proposers: r for r in loads if r.system == system}
        xs = [i + n * width for i in range(len(points))]
        axes[0].bar(xs, [by_point[p].commits_per_s if p in by_point else 0 for p in points], width, label=system)
        axes[1].bar(xs, [by_point[p].p99_ms if p in by_point else 0 for p in points], width, label=system)
    for ax, label in zip(axes, ("committed proposals/s", "p99 latency, ms (log scale)")):
        ax.set_xticks([i + 0.4 - width / 2 for i in range(len(points))], [f"{p} proposers" for p in points])
        ax.set_ylabel(label)
    axes[1].set_yscale("log")
    axes[0].legend()
    fig.suptitle("3 processes on loopback: Pygmy (fsync on) vs PySyncObj 0.3.17 (tuned)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


async def run(args: argparse.Namespace) -> tuple[list[LoadResult], list[FailoverResult]]:
    loads: list[LoadResult] = []
    failovers: list[FailoverResult] = []
    with tempfile.TemporaryDirectory(prefix="pygmy-bench-") as tmp:
        for system in SYSTEMS:
            if system.name == "pysyncobj" and args.skip_pysyncobj:
                continue
            system_loads, system_failovers = await run_system(system, args, Path(tmp))
            loads += system_loads
            failovers += system_failovers
    return loads, failovers


def main(argv: Sequence[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["syncobj-node"]:
        syncobj_node(argv[1:])
        return
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=5.0, help="seconds per load point")
    parser.add_argument("--proposers", type=lambda s: [int(x) for x in s.split(",")], default=[1, 64])
    parser.add_argument("--trials", type=int, default=7, help="leader kills per system")
    parser.add_argument("--skip-pysyncobj", action="store_true")
    parser.add_argument("--micro", action="store_true", help="only the storage and transport micro-benchmarks")
    parser.add_argument("--out", default="docs/raft-benchmark.md", help="markdown report; '-' for none")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.raft_bench" + ("" if not argv else " " + " ".join(argv))
    storage = measure_storage()
    transport = asyncio.run(measure_transport())
    loads: list[LoadResult] = []
    failovers: list[FailoverResult] = []
    if not args.micro:
        loads, failovers = asyncio.run(run(args))
    tables, markdown = render(loads, failovers, storage, transport, command)
    console = Console()
    for table in tables:
        console.print(table)
    if args.out != "-":
        out = Path(args.out)
        if loads:
            plot(loads, out.with_suffix(".png"))
            markdown += f"\n![commits/s and p99 latency]({out.with_suffix('.png').name})\n"
        # Hand-written notes below the marker survive a new run.
        previous = out.read_text() if out.exists() else ""
        if NOTES_MARKER in previous:
            markdown += "\n" + previous[previous.index(NOTES_MARKER) :]
        out.write_text(markdown)
        console.print(f"written to {out}")


if __name__ == "__main__":
    main()
