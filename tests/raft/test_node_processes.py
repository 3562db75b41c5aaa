"""Raft groups of real processes on loopback: elections, kill -9, restarts, lost disks, redirects.

Each test runs three `python -m tests.support.raft_member` members on free ports in a tmp dir and kills them all
at the end, even on failure. Waits are bounded by generous deadlines; nothing here asserts on timing.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import msgspec
import pytest

from support.raft_cluster import LocalGroup


def incr(key: str, n: int = 1) -> bytes:
    return msgspec.msgpack.encode(["incr", key, n])


def get(key: str) -> bytes:
    return msgspec.msgpack.encode(["get", key])


@pytest.fixture
async def group(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[LocalGroup]:
    extra = getattr(request, "param", [])
    g = LocalGroup(3, tmp_path, secret="process-test-secret", extra=extra)
    try:
        g.start_all()
        yield g
    finally:
        g.stop()


async def local_value(group: LocalGroup, node: int, key: str) -> int | None:
    code, payload, _ = await (await group.client(node)).call("local_read", get(key))
    assert code == "ok"
    return msgspec.msgpack.decode(payload)


async def wait_for_value(group: LocalGroup, node: int, key: str, expected: int, timeout: float = 30.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (value := await local_value(group, node, key)) != expected:
        assert asyncio.get_running_loop().time() < deadline, f"node {node} has {key}={value}, not {expected}"
        await asyncio.sleep(0.05)


async def test_three_processes_elect_one_leader_and_commit(group: LocalGroup) -> None:
    leader = await group.leader()
    for n in range(1, 11):
        assert msgspec.msgpack.decode(await group.propose(incr("books"))) == n
    assert msgspec.msgpack.decode(await group.read(get("books"))) == 10
    for node in group.ids:
        await wait_for_value(group, node, "books", 10)
    statuses = await group.statuses()
    assert [s["id"] for s in statuses.values() if s["role"] == "leader"] == [leader]


async def test_a_follower_refuses_with_not_leader_naming_the_leader(group: LocalGroup) -> None:
    leader = await group.leader()
    follower = next(n for n in group.ids if n != leader)
    client = await group.client(follower)
    assert await client.call("propose", incr("x")) == ("not_leader", b"", leader)
    assert await client.call("read", get("x")) == ("not_leader", b"", leader)


async def test_kill_9_of_the_leader_elects_a_new_one_that_keeps_every_committed_entry(group: LocalGroup) -> None:
    first = await group.leader()
    for n in range(1, 21):
        assert msgspec.msgpack.decode(await group.propose(incr("sold"))) == n
    group.kill(first)
    second = await group.leader()
    assert second != first
    # All 20 acknowledged increments survived: the next one answers 21.
    assert msgspec.msgpack.decode(await group.propose(incr("sold"))) == 21
    # The old leader comes back as a follower of the new one and catches up.
    group.start(first)
    await wait_for_value(group, first, "sold", 21)
    assert await group.leader() == second


async def test_a_restarted_member_catches_up_from_its_data_dir(group: LocalGroup) -> None:
    leader = await group.leader()
    follower = next(n for n in group.ids if n != leader)
    for _ in range(5):
        await group.propose(incr("k"))
    await wait_for_value(group, follower, "k", 5)
    group.kill(follower)
    for _ in range(30):
        await group.propose(incr("k"))
    group.start(follower)
    await wait_for_value(group, follower, "k", 35)


@pytest.mark.parametrize("group", [["--snapshot-every", "20"]], indirect=True)
async def test_a_member_that_lost_its_disk_catches_up_from_a_snapshot(group: LocalGroup) -> None:
    leader = await group.leader()
    follower = next(n for n in group.ids if n != leader)
    for _ in range(60):
        await group.propose(incr("k"))
    await wait_for_value(group, follower, "k", 60)
    # The leader has compacted its log: the empty member can only start from a snapshot.
    assert (await group.statuses())[leader]["snapshot_index"] >= 20
    term = (await group.statuses())[leader]["term"]
    # It had matched the leader's whole log, so the leader must notice the loss itself, not by a timeout.
    group.kill(follower)
    shutil.rmtree(group.data_dir(follower))
    group.start(follower)
    await wait_for_value(group, follower, "k", 60, timeout=10.0)
    assert msgspec.msgpack.decode(await group.propose(incr("k"))) == 61
    await wait_for_value(group, follower, "k", 61, timeout=10.0)
    statuses = await group.statuses()
    assert statuses[follower]["snapshot_index"] >= 20
    # The same leader repaired it: no election was needed (nor happened).
    assert {s["term"] for s in statuses.values()} == {term}
    assert await group.leader() == leader


async def test_every_member_restarted_after_kill_9_keeps_the_committed_state(group: LocalGroup) -> None:
    await group.leader()
    for _ in range(25):
        await group.propose(incr("k"))
    for node in group.ids:
        group.kill(node)
    group.start_all()
    await group.leader()
    assert msgspec.msgpack.decode(await group.propose(incr("k"))) == 26


async def test_a_command_retried_at_the_new_leader_with_its_session_applies_once(group: LocalGroup) -> None:
    first = await group.leader()
    session = await group.register_session()
    once = msgspec.msgpack.encode([session, 1, 0, incr("stock", -1)])
    assert msgspec.msgpack.decode(await group.propose_once(once)) == -1
    group.kill(first)
    # The client never heard back (say), so it retries the same (session, seq) wherever the leader is now.
    assert msgspec.msgpack.decode(await group.propose_once(once)) == -1
    assert msgspec.msgpack.decode(await group.read(get("stock"))) == -1
    nxt = msgspec.msgpack.encode([session, 2, 1, incr("stock", -1)])
    assert msgspec.msgpack.decode(await group.propose_once(nxt)) == -2


async def test_leadership_moves_to_the_member_it_is_handed_to(group: LocalGroup) -> None:
    leader = await group.leader()
    target = next(n for n in group.ids if n != leader)
    await group.propose(incr("k"))
    code, _, _ = await (await group.client(leader)).call("transfer", msgspec.msgpack.encode(target))
    assert code == "ok"
    assert await group.leader() == target
    assert msgspec.msgpack.decode(await group.propose(incr("k"))) == 2


async def test_a_leader_cut_off_from_its_quorum_steps_down(group: LocalGroup) -> None:
    leader = await group.leader()
    for node in group.ids:
        if node != leader:
            group.kill(node)
    deadline = asyncio.get_running_loop().time() + 20
    while (await group.statuses())[leader]["role"] == "leader":
        assert asyncio.get_running_loop().time() < deadline, "the isolated leader kept leading"
        await asyncio.sleep(0.05)
    code, _, _ = await (await group.client(leader)).call("propose", incr("k"))
    assert code == "not_leader"
