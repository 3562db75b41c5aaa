"""Log replication and commitment rules of the core."""

from __future__ import annotations

import pytest

from pygmy.raft.core import NotLeader, RaftConfig, RaftCore
from pygmy.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    HardState,
    RequestVoteResponse,
    Role,
)

from .conftest import Cluster, drain, entries, make_core


def win_election(core: RaftCore) -> None:
    """Time out and collect every vote (pre-vote, then vote) by hand."""
    while core.role is Role.FOLLOWER:
        core.tick()
    drain(core)
    for pre_vote in (True, False):
        for peer in core.peers:
            term = core.term + 1 if pre_vote else core.term
            core.step(RequestVoteResponse(peer, core.id, term, granted=True, pre_vote=pre_vote))
    assert core.role is Role.LEADER


def ack(core: RaftCore, peer: int, match: int) -> None:
    core.step(AppendEntriesResponse(peer, core.id, core.term, success=True, match_index=match))


def test_an_entry_of_an_earlier_term_is_not_committed_by_counting_replicas() -> None:
    leader = make_core(1, hard_state=HardState(term=2), entries=entries(1, 2))
    win_election(leader)  # term 3; log is [1:t1, 2:t2, 3:noop t3]
    drain(leader)
    ack(leader, 2, match=2)  # a quorum (1 and 2) now holds index 2, an entry of term 2 (PySyncObj #169)
    assert leader.commit == 0
    ack(leader, 2, match=3)  # ... and once an entry of term 3 is on a quorum, everything before it commits
    assert leader.commit == 3


def test_the_planted_bug_commits_an_earlier_terms_entry_by_counting() -> None:
    leader = make_core(1, hard_state=HardState(term=2), entries=entries(1, 2), bugs=frozenset({"commit_old_term_by_counting"}))
    win_election(leader)
    drain(leader)
    ack(leader, 2, match=2)
    assert leader.commit == 2


def test_on_a_conflict_the_follower_deletes_from_the_first_conflicting_entry() -> None:
    follower = make_core(2, hard_state=HardState(term=2), entries=entries(1, 1, 2, 2))
    new = (Entry(3, 3, data=b"a"), Entry(3, 4, data=b"b"))
    follower.step(AppendEntries(1, 2, 3, prev_log_index=2, prev_log_term=1, entries=new, leader_commit=0))
    rd = drain(follower)
    assert [e.term for e in follower.log.entries] == [1, 1, 3, 3]
    assert rd.entries == list(new)  # storage discards from index 3 and appends


def test_a_stale_shorter_append_never_truncates_entries_that_match() -> None:
    follower = make_core(2, hard_state=HardState(term=1), entries=entries(1, 1, 1, 1))
    duplicate = (Entry(1, 2, data=b"2"),)
    follower.step(AppendEntries(1, 2, 1, prev_log_index=1, prev_log_term=1, entries=duplicate, leader_commit=0))
    rd = drain(follower)
    assert follower.log.last_index() == 4 and rd.entries == []  # openraft #511
    assert rd.messages == [AppendEntriesResponse(2, 1, 1, success=True, match_index=2)]


def test_a_followers_commit_never_passes_the_last_entry_this_message_matched() -> None:
    # Entries 3 and 4 are left over from a deposed leader of term 2; the term-3 leader has others there.
    follower = make_core(2, hard_state=HardState(term=2), entries=entries(1, 1, 2, 2))
    follower.step(AppendEntries(1, 2, 3, prev_log_index=2, prev_log_term=1, entries=(), leader_commit=4))
    assert follower.commit == 2  # copycat #265: not 4, which would commit the stale entries


def test_the_commit_index_never_decreases() -> None:
    follower = make_core(2, hard_state=HardState(term=1, commit=4), entries=entries(1, 1, 1, 1))
    assert follower.commit == 4
    follower.step(AppendEntries(1, 2, 1, prev_log_index=1, prev_log_term=1, entries=(), leader_commit=2))
    assert follower.commit == 4  # PySyncObj #166
    drain(follower)
    assert follower.commit == 4


def test_a_rejection_carries_hints_that_skip_a_whole_conflicting_term() -> None:
    follower = make_core(2, hard_state=HardState(term=3), entries=entries(1, 2, 2, 2, 2))
    follower.step(AppendEntries(1, 2, 4, prev_log_index=5, prev_log_term=4, entries=(), leader_commit=0))
    (reply,) = drain(follower).messages
    assert (reply.success, reply.conflict_term, reply.conflict_index, reply.reject_index) == (False, 2, 2, 5)


def test_a_rejection_from_a_short_log_points_just_past_its_end() -> None:
    follower = make_core(2, hard_state=HardState(term=3), entries=entries(1, 1))
    follower.step(AppendEntries(1, 2, 3, prev_log_index=9, prev_log_term=3, entries=(), leader_commit=0))
    (reply,) = drain(follower).messages
    assert (reply.conflict_term, reply.conflict_index) == (0, 3)


def test_fast_backtracking_repairs_a_divergent_follower_in_few_round_trips() -> None:
    cluster = Cluster()
    cluster.cores[1] = make_core(1, hard_state=HardState(term=4), entries=entries(1, 1, 4, 4, 4, 4))
    cluster.cores[2] = make_core(2, hard_state=HardState(term=4), entries=entries(1, 1, 4, 4))
    cluster.cores[3] = make_core(3, hard_state=HardState(term=3), entries=entries(1, 1, 2, 2, 2, 2, 2, 3, 3, 3))
    rejections: list[AppendEntriesResponse] = []

    def record_rejections(m: object) -> bool:
        if isinstance(m, AppendEntriesResponse) and not m.success:
            rejections.append(m)
        return False

    cluster.cut = record_rejections
    cluster.elect(1)
    cluster.cores[1].propose(b"x")
    cluster.run()
    assert [e.term for e in cluster[3].log.entries] == [e.term for e in cluster[1].log.entries]
    assert len([r for r in rejections if r.src == 3]) == 1  # one round trip skips all of term 2 (Raft §5.3)


def test_replication_is_pipelined_but_bounded_in_flight() -> None:
    config = RaftConfig(max_entries_per_message=1, max_inflight_messages=3)
    cluster = Cluster(config=config)
    cluster.elect(1)
    leader = cluster[1]
    for i in range(10):
        leader.propose(b"%d" % i)
    appends = [m for m in drain(leader).messages if isinstance(m, AppendEntries) and m.dst == 2 and m.entries]
    assert [m.entries[0].index for m in appends] == [2, 3, 4]  # three unacknowledged, then it waits
    ack(leader, 2, match=2)
    more = [m for m in drain(leader).messages if isinstance(m, AppendEntries) and m.dst == 2 and m.entries]
    assert [m.entries[0].index for m in more] == [5]


def test_many_proposals_before_one_ready_share_one_ready() -> None:
    cluster = Cluster()
    cluster.elect(1)
    leader = cluster[1]
    for i in range(5):
        leader.propose(b"%d" % i)
    rd = leader.ready()
    assert [e.data for e in rd.entries] == [b"0", b"1", b"2", b"3", b"4"]
    leader.advance(rd)


def test_a_leader_counts_itself_towards_a_commit_only_once_its_entries_are_persisted() -> None:
    solo = make_core(1, members=[1])
    while solo.role is not Role.LEADER:
        solo.tick()
    drain(solo)
    index, term = solo.propose(b"x")
    rd = solo.ready()
    assert rd.entries[-1].index == index and rd.committed == [] and solo.commit < index
    solo.advance(rd)
    assert [e.index for e in solo.ready().committed] == [index]


def test_proposing_to_a_follower_raises_not_leader_naming_the_leader(three: Cluster) -> None:
    three.elect(1)
    with pytest.raises(NotLeader) as raised:
        three[2].propose(b"x")
    assert raised.value.leader == 1


def test_a_proposal_commits_everywhere_and_its_index_and_term_identify_it(three: Cluster) -> None:
    three.elect(1)
    index, term = three[1].propose(b"buy")
    three.run()
    for node in (1, 2, 3):
        assert (index, term, b"buy") in [(e.index, e.term, e.data) for e in three.applied[node]]


def test_a_follower_only_applies_committed_entries(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: m.dst == 1 and m.src != 1  # acknowledgements never reach the leader
    three[1].propose(b"pending")
    three.run()
    assert b"pending" in [e.data for e in three[2].log.entries]
    assert b"pending" not in [e.data for e in three.applied[2]]
