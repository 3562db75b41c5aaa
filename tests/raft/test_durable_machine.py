"""Replicas whose state machine lives on disk (SQLite): a restart applies nothing twice and skips nothing.

Three RaftGroups in one process on loopback, each with a real SQLite file and a real Raft data directory,
stopped and started again as a restarted process would be.
"""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from pygmy.raft.messages import Role
from pygmy.raft.node import CommandRejected, GroupOptions, RaftGroup
from pygmy.raft.sqlite_machine import SQLiteMachine
from pygmy.raft.storage import StorageCorrupt
from support.cluster import free_ports


class Refused(CommandRejected):
    pass


class Counter(SQLiteMachine):
    """b"add:N" adds N (a negative N is refused) and answers the new value; a query answers the value."""

    SCHEMA = """
    CREATE TABLE IF NOT EXISTS counter (id INTEGER PRIMARY KEY CHECK (id = 0), value INTEGER NOT NULL);
    INSERT OR IGNORE INTO counter VALUES (0, 0);
    """

    def execute(self, db: sqlite3.Connection, command: bytes) -> bytes:
        amount = int(command.removeprefix(b"add:"))
        db.execute("UPDATE counter SET value = value + ?", (amount,))
        if amount < 0:
            raise Refused("only additions")  # after a write: the savepoint must undo it
        return self.read(db, b"")

    def read(self, db: sqlite3.Connection, query: bytes) -> bytes:
        return str(db.execute("SELECT value FROM counter").fetchone()[0]).encode()

    def dump(self, db: sqlite3.Connection) -> bytes:
        return self.read(db, b"")

    def load(self, db: sqlite3.Connection, data: bytes) -> None:
        db.execute("UPDATE counter SET value = ?", (int(data),))


class Cluster:
    """Three members with durable counters; `stop` and `start` them as processes would be."""

    def __init__(self, root: Path, options: GroupOptions) -> None:
        self.root = root
        self.options = options
        self.peers = {i: ("127.0.0.1", port) for i, port in zip((1, 2, 3), free_ports(3))}
        self.groups: dict[int, RaftGroup] = {}
        self.machines: dict[int, Counter] = {}

    def raft_dir(self, member: int) -> Path:
        return self.root / f"raft-{member}"

    def db_path(self, member: int) -> Path:
        return self.root / f"counter-{member}.db"

    async def start(self, member: int, *, join: bool = False, as_member: int | None = None) -> None:
        self.machines[member] = Counter(self.db_path(member))
        group = RaftGroup(
            as_member or member, self.peers, self.raft_dir(member), "secret", self.machines[member], self.options, join=join
        )
        self.groups[member] = group
        await group.start()

    async def stop(self, member: int) -> None:
        await self.groups.pop(member).stop()
        self.machines.pop(member).close()

    async def start_all(self) -> None:
        for member in self.peers:
            await self.start(member)

    async def stop_all(self) -> None:
        for member in list(self.groups):
            await self.stop(member)

    async def leader(self) -> RaftGroup:
        for _ in range(2000):
            leaders = [g for g in self.groups.values() if g.status().role == Role.LEADER]
            if len(leaders) == 1 and all(g.status().leader == leaders[0].node_id for g in self.groups.values()):
                return leaders[0]
            await asyncio.sleep(0.01)
        raise AssertionError("no leader agreed on within 20 s")

    def value_on_disk(self, member: int) -> int:
        with sqlite3.connect(self.db_path(member)) as db:
            return db.execute("SELECT value FROM counter").fetchone()[0]

    async def converge(self, value: int) -> None:
        """Wait until every member's database holds `value`."""
        for _ in range(1000):
            if all(self.value_on_disk(m) == value for m in self.groups):
                return
            await asyncio.sleep(0.01)
        raise AssertionError(f"databases hold {[self.value_on_disk(m) for m in self.groups]}, not {value}")


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    # No snapshots unless a test asks: a restart that replayed the log would replay all of it.
    c = Cluster(tmp_path, GroupOptions(snapshot_every=100_000))
    await c.start_all()
    try:
        yield c
    finally:
        await c.stop_all()


async def test_a_restarted_cluster_applies_no_entry_twice(cluster: Cluster) -> None:
    # Without a session nothing would catch a second application: only resuming after the durable index does.
    leader = await cluster.leader()
    for _ in range(10):
        await leader.propose(b"add:1")
    await cluster.converge(10)
    await cluster.stop_all()
    await cluster.start_all()
    leader = await cluster.leader()
    assert await leader.read(b"") == b"10"  # not 20: what the databases hold was not applied again
    assert await leader.propose(b"add:1") == b"11"
    await cluster.converge(11)


async def test_a_retry_after_a_restart_is_answered_from_the_durable_session_table(cluster: Cluster) -> None:
    leader = await cluster.leader()
    session = await leader.register_session(b"client")
    assert await leader.propose(b"add:5", session=session, seq=1) == b"5"
    await cluster.converge(5)
    await cluster.stop_all()
    await cluster.start_all()
    leader = await cluster.leader()
    # The client never heard its answer and retries: the session table came back with the state.
    assert await leader.propose(b"add:5", session=session, seq=1) == b"5"
    await cluster.converge(5)


async def test_a_refused_command_leaves_no_trace_and_its_entry_neighbours_stand(cluster: Cluster) -> None:
    leader = await cluster.leader()
    outcomes = await asyncio.gather(
        leader.propose(b"add:1"), leader.propose(b"add:-7"), leader.propose(b"add:2"), return_exceptions=True
    )
    assert outcomes[0] == b"1" and isinstance(outcomes[1], Refused) and outcomes[2] == b"3"
    await cluster.converge(3)


async def test_a_member_whose_database_was_lost_is_rebuilt_from_the_snapshot_and_the_log(tmp_path: Path) -> None:
    cluster = Cluster(tmp_path, GroupOptions(snapshot_every=4))
    await cluster.start_all()
    try:
        leader = await cluster.leader()
        for _ in range(10):
            await leader.propose(b"add:1")
        await cluster.converge(10)
        await cluster.stop(2)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{cluster.db_path(2)}{suffix}").unlink(missing_ok=True)
        await cluster.start(2)
        await cluster.converge(10)
    finally:
        await cluster.stop_all()


async def test_a_member_whose_log_was_lost_but_not_its_database_refuses_to_start(cluster: Cluster) -> None:
    leader = await cluster.leader()
    await leader.propose(b"add:1")
    await cluster.converge(1)
    await cluster.stop(3)
    shutil.rmtree(cluster.raft_dir(3))
    with pytest.raises(StorageCorrupt, match="ahead|ends at"):
        await cluster.start(3)
    cluster.machines.pop(3).close()


async def test_a_data_directory_is_never_run_as_another_member(cluster: Cluster) -> None:
    await cluster.stop(3)
    with pytest.raises(StorageCorrupt, match="belongs to member 3"):
        await cluster.start(3, as_member=2)
    cluster.machines.pop(3).close()


async def test_a_member_that_lost_its_disk_rejoins_catching_up_and_then_votes(cluster: Cluster) -> None:
    leader = await cluster.leader()
    for _ in range(5):
        await leader.propose(b"add:1")
    await cluster.converge(5)
    member = next(m for m, g in cluster.groups.items() if g is not leader)
    await cluster.stop(member)
    shutil.rmtree(cluster.raft_dir(member))
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cluster.db_path(member)}{suffix}").unlink(missing_ok=True)
    await cluster.start(member, join=True)
    rejoined = cluster.groups[member]
    assert rejoined.core.catching_up  # it starts as a non-voter ...
    await cluster.converge(5)
    # ... and votes again once it holds what was committed, durably: the flag is cleared in memory first
    # (conservative: a crash before the save only repeats the catch-up) and saved with the next Ready.
    for _ in range(1000):
        if not rejoined.core.catching_up and not rejoined.storage.hard_state.catching_up:
            break
        await asyncio.sleep(0.01)
    assert not rejoined.core.catching_up
    assert not rejoined.storage.hard_state.catching_up
