"""Snapshots, log compaction, InstallSnapshot and restarting from persisted state."""

from __future__ import annotations

import pytest

from pygmy.raft.messages import (
    AppendEntries,
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Role,
    Snapshot,
)

from .conftest import Cluster, drain, entries, make_core


def commit_some(cluster: Cluster, count: int) -> None:
    for i in range(count):
        cluster[1].propose(b"%d" % i)
    cluster.run()


def test_compact_drops_the_log_up_to_the_snapshot_but_keeps_its_term(three: Cluster) -> None:
    three.elect(1)
    commit_some(three, 5)
    leader = three[1]
    leader.compact(Snapshot(index=4, term=leader.term_at(4), data=b"state@4"))
    assert leader.log.first_index() == 5 and leader.term_at(4) == 1 and leader.term_at(3) is None
    assert leader.status().snapshot_index == 4


def test_compacting_beyond_what_was_applied_is_refused(three: Cluster) -> None:
    three.elect(1)
    with pytest.raises(ValueError):
        three[1].compact(Snapshot(index=9, term=1))


def test_a_follower_behind_the_leaders_snapshot_receives_install_snapshot(three: Cluster) -> None:
    three.elect(1)
    three.cut = lambda m: 3 in (m.src, m.dst)  # node 3 falls behind
    commit_some(three, 6)
    leader = three[1]
    leader.compact(Snapshot(index=6, term=1, data=b"state@6"))
    sent: list[object] = []
    three.cut = lambda m: bool(sent.append(m))  # record, deliver everything
    three.tick_all(three[1].config.election_ticks)  # the leader notices its stream to 3 went unanswered
    assert any(isinstance(m, InstallSnapshot) and m.dst == 3 for m in sent)
    follower = three[3]
    assert follower.log.snapshot.index == 6
    assert (follower.commit, follower.status().last_index) == (leader.commit, leader.status().last_index)


def test_an_installed_snapshot_is_handed_out_to_persist_and_replaces_the_state_machine() -> None:
    follower = make_core(2, hard_state=HardState(term=1), entries=entries(1, 1))
    snapshot = Snapshot(index=10, term=2, data=b"state@10")
    follower.step(InstallSnapshot(1, 2, 2, snapshot))
    rd = follower.ready()
    assert rd.snapshot == snapshot and rd.committed == []
    assert rd.messages == [InstallSnapshotResponse(2, 1, 2, match_index=10)]
    follower.advance(rd)
    assert follower.status().applied == 10 and follower.log.last_index() == 10
    follower.step(AppendEntries(1, 2, 2, 10, 2, (Entry(2, 11, data=b"x"),), leader_commit=11))
    assert [e.index for e in drain(follower).committed] == [11]


def test_a_snapshot_the_follower_already_holds_keeps_its_log() -> None:
    follower = make_core(2, hard_state=HardState(term=1), entries=entries(1, 1, 1, 1))
    follower.step(InstallSnapshot(1, 2, 1, Snapshot(index=2, term=1, data=b"state@2")))
    rd = drain(follower)
    assert rd.snapshot is None and follower.log.last_index() == 4 and follower.commit == 2
    assert [e.index for e in rd.committed] == [1, 2]


def test_a_follower_that_lost_its_disk_is_restored_from_the_snapshot(three: Cluster) -> None:
    three.elect(1)
    commit_some(three, 6)
    for node in (1, 2):
        three[node].compact(Snapshot(index=5, term=1, data=b"state@5"))
    three.cores[3] = make_core(3)  # empty disk
    three[1].transfer_leadership(2)  # a new leader's probe finds the empty log
    three.run()
    three.tick_all(3)
    fresh = three[3]
    assert fresh.log.snapshot.index >= 5 and fresh.log.last_index() == three[2].log.last_index()


def test_the_same_leader_restores_a_follower_that_lost_its_disk_without_an_election(three: Cluster) -> None:
    three.elect(1)
    commit_some(three, 6)
    leader = three[1]
    term, match = leader.term, leader._progress[3].match
    assert match == leader.log.last_index()  # node 3 had matched everything
    leader.compact(Snapshot(index=5, term=1, data=b"state@5"))
    three.cores[3] = make_core(3)  # restarts from an empty data dir, in the same term
    sent: list[object] = []
    three.cut = lambda m: bool(sent.append(m))  # record, deliver everything
    three.tick_all(3)  # heartbeats: node 3 rejects the leader's match, the leader probes down to its snapshot
    fresh = three[3]
    assert any(isinstance(m, InstallSnapshot) and m.dst == 3 for m in sent)
    assert fresh.log.snapshot.index == 5 and fresh.log.last_index() == leader.log.last_index()
    assert (fresh.commit, fresh.leader) == (leader.commit, 1)
    assert leader.role is Role.LEADER and {core.term for core in three.cores.values()} == {term}


def test_a_restart_keeps_term_vote_and_log_and_reapplies_committed_entries_after_the_snapshot() -> None:
    log = entries(1, 1, 2, 2, 2)
    core = make_core(1, hard_state=HardState(term=2, vote=3, commit=4), snapshot=Snapshot(2, 1, b"s"), entries=log[2:])
    assert (core.term, core.vote, core.commit) == (2, 3, 4)
    rd = drain(core)
    assert [e.index for e in rd.committed] == [3, 4]


def test_a_restart_with_a_durable_state_machine_does_not_reapply() -> None:
    core = make_core(1, hard_state=HardState(term=2, commit=4), entries=entries(1, 1, 2, 2, 2), applied=4)
    assert drain(core).committed == []
