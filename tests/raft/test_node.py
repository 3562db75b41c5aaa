"""RaftGroup in one process: three members on loopback, driven through the API services use."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest

from pygmy.raft.core import NotLeader, RaftConfig
from pygmy.raft.messages import Role
from pygmy.raft.node import CommandRejected, GroupFailed, GroupOptions, ProposalTimeout, RaftGroup, ReadTimeout
from pygmy.raft.sessions import SessionExpired
from support.cluster import free_ports


class Refused(CommandRejected):
    pass


class Register:
    """Commands: b"set:<value>" answers the old value; b"boom" is refused. Queries answer the value.

    `disk_error` makes every apply fail as a broken disk would (an undeclared error).
    """

    def __init__(self) -> None:
        self.value = b""
        self.disk_error = False

    def apply(self, command: bytes) -> bytes:
        if self.disk_error:
            raise OSError(5, "Input/output error")
        if command == b"boom":
            raise Refused("the state machine refuses this command")
        old, self.value = self.value, command.removeprefix(b"set:")
        return old

    def query(self, query: bytes) -> bytes:
        if query == b"boom":
            raise KeyError(query)
        return self.value

    def snapshot(self) -> bytes:
        return self.value

    def restore(self, data: bytes) -> None:
        self.value = data


@pytest.fixture
async def groups(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[dict[int, RaftGroup]]:
    options: GroupOptions = getattr(request, "param", GroupOptions(snapshot_every=5))
    peers = {i: ("127.0.0.1", port) for i, port in zip((1, 2, 3), free_ports(3))}
    members = {
        i: RaftGroup(i, peers, tmp_path / str(i), "in-process-secret", Register(), replace(options, seed=i))
        for i in peers
    }
    for group in members.values():
        await group.start()
    try:
        yield members
    finally:
        for group in members.values():
            await group.stop()


async def leader_of(groups: dict[int, RaftGroup]) -> RaftGroup:
    for _ in range(2000):
        leaders = [g for g in groups.values() if g.status().role == Role.LEADER]
        if len(leaders) == 1 and all(g.status().leader == leaders[0].node_id for g in groups.values()):
            return leaders[0]
        await asyncio.sleep(0.01)
    raise AssertionError("no leader agreed on within 20 s")


async def test_propose_answers_with_the_result_of_applying_and_read_sees_it(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    assert await leader.propose(b"set:a") == b""
    results = await asyncio.gather(*(leader.propose(f"set:{n}".encode()) for n in range(20)))
    assert results[0] == b"a"  # concurrent proposals apply in the order they were made
    assert await leader.read(b"") == b"19"


async def test_a_follower_raises_not_leader_naming_the_leader(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    follower = next(g for g in groups.values() if g is not leader)
    with pytest.raises(NotLeader) as refused:
        await follower.propose(b"set:x")
    assert refused.value.leader == leader.node_id
    with pytest.raises(NotLeader):
        await follower.read(b"")


async def test_a_command_the_state_machine_refuses_fails_alone(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    outcomes = await asyncio.gather(leader.propose(b"set:1"), leader.propose(b"boom"), leader.propose(b"set:2"),
                                    return_exceptions=True)  # fmt: skip
    assert outcomes[0] == b"" and isinstance(outcomes[1], Refused) and outcomes[2] == b"1"
    with pytest.raises(KeyError):
        await leader.read(b"boom")
    assert await leader.read(b"") == b"2"


async def test_sessions_registered_concurrently_get_distinct_ids_and_a_retry_applies_once(
    groups: dict[int, RaftGroup],
) -> None:
    leader = await leader_of(groups)
    sessions = await asyncio.gather(*(leader.register_session() for _ in range(5)), leader.propose(b"set:a"))
    assert len(set(sessions[:5])) == 5  # each registration is its own log entry, so its own id
    assert await leader.register_session(b"key") == await leader.register_session(b"key")  # a retry: same session
    session = sessions[0]
    assert await leader.propose(b"set:b", session=session, seq=1) == b"a"
    assert await leader.propose(b"set:b", session=session, seq=1) == b"a"  # the retry: first answer, no effect
    assert await leader.propose(b"set:c", session=session, seq=2, ack=1) == b"b"
    with pytest.raises(SessionExpired):
        await leader.propose(b"set:d", session=max(sessions[:5]) + 1000, seq=1)
    assert await leader.read(b"") == b"c"


async def test_an_undeclared_error_while_applying_stops_that_replica_and_the_others_carry_on(
    groups: dict[int, RaftGroup],
) -> None:
    leader = await leader_of(groups)
    await leader.propose(b"set:1")
    broken = next(g for g in groups.values() if g is not leader)
    broken.state_machine.disk_error = True  # type: ignore[attr-defined]
    assert await leader.propose(b"set:2") == b"1"  # a quorum without the broken replica commits it
    for _ in range(500):
        if broken.failure is not None:
            break
        await asyncio.sleep(0.01)
    # Fail-stop: the broken replica did not skip the entry and carry on diverged; it stopped.
    assert isinstance(broken.failure, OSError)
    with pytest.raises(GroupFailed):
        await broken.read(b"")
    assert await leader.propose(b"set:3") == b"2"


async def test_snapshots_compact_the_log_and_the_state_survives(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    for n in range(12):
        await leader.propose(f"set:{n}".encode())
    assert leader.status().snapshot_index >= 5
    assert leader.storage.state().snapshot.index >= 5


async def test_a_failed_disk_write_stops_the_replica_and_the_others_carry_on(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)

    def broken(*args: object) -> None:
        raise OSError(28, "No space left on device")

    leader.storage.save = broken  # type: ignore[method-assign]
    with pytest.raises(GroupFailed):
        await leader.propose(b"set:lost")
    with pytest.raises(GroupFailed):
        await leader.propose(b"set:again")
    # The others carry on without it.
    survivors = {i: g for i, g in groups.items() if g is not leader}
    for _ in range(2000):
        new = [g for g in survivors.values() if g.status().role == Role.LEADER]
        if new:
            break
        await asyncio.sleep(0.01)
    # "lost" had left in the leader's AppendEntries before its own write failed, so it may have
    # committed: GroupFailed means the outcome is unknown, as with ProposalDropped.
    assert await new[0].propose(b"set:after") in (b"", b"lost")


async def test_leadership_transfer_hands_over_to_the_target(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    target = next(i for i in groups if i != leader.node_id)
    await leader.propose(b"set:t")
    await leader.transfer_leadership(target)
    assert (await leader_of(groups)).node_id == target


# Without check-quorum a leader cut off from its followers keeps believing it leads: nothing but a
# deadline ends its callers' wait.
NO_STEP_DOWN = GroupOptions(
    raft=RaftConfig(election_ticks=15, heartbeat_ticks=3, check_quorum=False), read_timeout=0.2, propose_timeout=0.2
)


@pytest.mark.parametrize("groups", [NO_STEP_DOWN], indirect=True)
async def test_a_leader_without_a_quorum_fails_reads_and_proposals_within_their_timeout(
    groups: dict[int, RaftGroup],
) -> None:
    leader = await leader_of(groups)
    await leader.propose(b"set:1")
    for follower in groups.values():
        if follower is not leader:
            follower.core.step = lambda message: None  # type: ignore[method-assign]  # deaf: no quorum answers
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        await leader.read(b"")
    with pytest.raises(ProposalTimeout):
        await leader.propose(b"set:2")
    assert time.monotonic() - started < 2.0
    assert leader.status().role == Role.LEADER  # still believes it leads: only the deadline ended the waits
    # Nothing of the abandoned calls stays behind, in the runtime or in the core.
    assert (leader._reads, leader.driver._confirmed_reads, leader._proposals) == ({}, [], {})
    assert leader.core._pending_reads == []


async def test_a_retry_of_a_pending_session_command_waits_for_the_same_entry(groups: dict[int, RaftGroup]) -> None:
    leader = await leader_of(groups)
    session = await leader.register_session(b"retrying-client")
    before = leader.status().last_index
    first = leader.submit(b"set:r", session=session, seq=1)
    while leader.status().last_index == before:
        await asyncio.sleep(0)  # until its entry is in the leader's log, not yet committed
    assert not first.done()
    retry = leader.submit(b"set:r", session=session, seq=1)  # the client timed out and asked again
    assert await first == await retry
    assert leader.status().last_index == before + 1  # one entry, not two
    # Without a session, the same bytes are two commands: both are appended and applied.
    assert await asyncio.gather(leader.propose(b"set:n"), leader.propose(b"set:n")) == [b"r", b"n"]
