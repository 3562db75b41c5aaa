"""ReadIndex (linearizable reads without writing to the log) and leadership transfer via TimeoutNow."""

from __future__ import annotations

import pytest

from pygmy.raft.core import NotLeader, ReadState
from pygmy.raft.messages import AppendEntries, AppendEntriesResponse, RequestVote, Role, TimeoutNow

from .conftest import Cluster, drain


def test_a_read_is_released_only_after_a_quorum_acknowledges_a_heartbeat_sent_after_it(three: Cluster) -> None:
    three.elect(1)
    leader = three[1]
    leader.read_index(ctx=7)
    rd = drain(leader)
    assert rd.read_states == []
    (probe,) = [m for m in rd.messages if isinstance(m, AppendEntries) and m.dst == 2]
    stale = AppendEntriesResponse(2, 1, leader.term, success=True, match_index=1, heartbeat_seq=probe.heartbeat_seq - 1)
    leader.step(stale)
    assert drain(leader).read_states == []
    leader.step(AppendEntriesResponse(2, 1, leader.term, success=True, match_index=1, heartbeat_seq=probe.heartbeat_seq))
    assert drain(leader).read_states == [ReadState(ctx=7, index=leader.commit)]


def test_a_read_waits_until_the_leader_has_committed_an_entry_of_its_term(three: Cluster) -> None:
    leader = three[1]
    while leader.role is not Role.PRE_CANDIDATE:
        leader.tick()
    three.cut = lambda m: isinstance(m, AppendEntriesResponse)  # the NOOP cannot commit
    three.run()
    assert leader.role is Role.LEADER and leader.commit == 0
    leader.read_index(ctx=1)
    three.tick_all(2)
    assert leader.role is Role.LEADER
    three.cut = lambda m: False
    leader.read_index(ctx=2)
    assert three.read_states[1] == []
    three.tick_all(3)
    reads = three.read_states[1]
    assert [r.ctx for r in reads] == [1, 2] and all(r.index >= 1 for r in reads)


def test_reads_pending_when_leadership_is_lost_are_reported_failed(three: Cluster) -> None:
    three.elect(1)
    leader = three[1]
    leader.read_index(ctx=5)
    drain(leader)
    leader.step(AppendEntries(2, 1, leader.term + 1, 0, 0, (), 0))
    assert drain(leader).failed_reads == [5]


def test_read_index_on_a_follower_raises_not_leader(three: Cluster) -> None:
    three.elect(1)
    with pytest.raises(NotLeader) as raised:
        three[3].read_index(ctx=1)
    assert raised.value.leader == 1


def test_a_single_node_serves_reads_at_once() -> None:
    solo = Cluster(ids=[1])
    solo.elect(1)
    solo[1].read_index(ctx=3)
    assert drain(solo[1]).read_states == [ReadState(3, 1)]


def test_leadership_transfer_catches_the_target_up_then_sends_timeout_now(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: m.dst == 3  # node 3 misses an entry
    three[1].propose(b"x")
    three.run()
    seen: list[object] = []
    three.cut = lambda m: bool(seen.append(m))
    three[1].transfer_leadership(3)
    three.tick_all(three[1].config.election_ticks // 2)  # the lost entry is resent
    kinds = [type(m).__name__ for m in seen if m.dst == 3 or m.src == 3]
    assert kinds.index("TimeoutNow") > kinds.index("AppendEntries")
    assert three[3].role is Role.LEADER and three[1].role is Role.FOLLOWER
    assert any(isinstance(m, RequestVote) and m.transfer for m in seen)


def test_proposals_during_a_transfer_are_refused_naming_the_target(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: isinstance(m, TimeoutNow)
    three[1].transfer_leadership(2)
    three.run()
    with pytest.raises(NotLeader) as raised:
        three[1].propose(b"x")
    assert raised.value.leader == 2


def test_a_transfer_that_does_not_happen_within_an_election_timeout_is_abandoned(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: isinstance(m, TimeoutNow)
    three[1].transfer_leadership(2)
    three.tick_all(three[1].config.election_ticks)
    assert three[1].role is Role.LEADER
    three[1].propose(b"x")  # accepted again
