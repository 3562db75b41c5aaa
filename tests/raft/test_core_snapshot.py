"""Snapshots, log compaction and its trailing window, InstallSnapshot in chunks, and restarting from persisted state."""

from __future__ import annotations

import pytest

from pygmy.raft.core import RaftConfig
from pygmy.raft.log import LogInvariantError
from pygmy.raft.messages import (
    AppendEntries,
    Entry,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    Role,
    Snapshot,
)

from .conftest import CONFIG, Cluster, drain, entries, make_core

NO_WINDOW = RaftConfig(election_ticks=10, heartbeat_ticks=1, catch_up_entries=0)
# Chunks of 8 bytes: the 100-byte state below travels as 13 of them.
SMALL_CHUNKS = RaftConfig(election_ticks=10, heartbeat_ticks=1, snapshot_chunk_bytes=8, catch_up_entries=0)
STATE = bytes(range(100))
PATIENCE = max(2, SMALL_CHUNKS.election_ticks // 2)  # ticks the leader waits for an ack before re-sending


def commit_some(cluster: Cluster, count: int) -> None:
    for i in range(count):
        cluster[1].propose(b"%d" % i)
    cluster.run()


def chunks_of(snapshot: Snapshot, size: int, *, term: int, src: int = 1, dst: int = 2) -> list[InstallSnapshot]:
    """The InstallSnapshot messages a leader of `term` sends for `snapshot` in chunks of `size` bytes."""
    data, total = snapshot.data, len(snapshot.data)
    return [
        InstallSnapshot(src, dst, term, snapshot.index, snapshot.term, offset, total, data[offset : offset + size])
        for offset in range(0, max(total, 1), size)
    ]


def snapshot_answers(messages: list[Message]) -> list[InstallSnapshotResponse]:
    return [m for m in messages if isinstance(m, InstallSnapshotResponse)]


class HeldSnapshotTraffic:
    """Holds back every InstallSnapshot and its answer, to be delivered (or lost) one message at a time."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.messages: list[Message] = []
        cluster.cut = self._hold

    def _hold(self, m: Message) -> bool:
        if isinstance(m, InstallSnapshot | InstallSnapshotResponse):
            self.messages.append(m)
            return True
        return False

    def chunks(self) -> list[InstallSnapshot]:
        return [m for m in self.messages if isinstance(m, InstallSnapshot)]

    def take(self) -> Message:
        return self.messages.pop(0)

    def deliver(self, m: Message) -> None:
        self.cluster[m.dst].step(m)
        self.cluster.run()  # everything else moves freely; new snapshot traffic is held again

    def deliver_all(self, limit: int = 1000) -> list[InstallSnapshot]:
        """Deliver held traffic (and whatever it causes) until none is left; return the chunks delivered."""
        delivered: list[InstallSnapshot] = []
        for _ in range(limit):
            if not self.messages:
                return delivered
            m = self.take()
            if isinstance(m, InstallSnapshot):
                delivered.append(m)
            self.deliver(m)
        raise AssertionError("the transfer did not finish")


def follower_behind_a_snapshot(config: RaftConfig = SMALL_CHUNKS) -> tuple[Cluster, HeldSnapshotTraffic]:
    """Node 3 missed entries 2..7, which leader 1 compacted into a snapshot of STATE; its first chunk is held."""
    cluster = Cluster(config=config)
    cluster.elect(1)
    cluster.cut = lambda m: 3 in (m.src, m.dst)
    commit_some(cluster, 6)
    cluster[1].compact(Snapshot(index=7, term=1, data=STATE))
    held = HeldSnapshotTraffic(cluster)
    for _ in range(2 * config.election_ticks):
        if held.messages:
            break
        cluster.tick_all()
    assert [(m.dst, m.offset) for m in held.chunks()] == [(3, 0)], held.messages
    return cluster, held


# -- compaction and its trailing window -------------------------------------------------------------------


def test_compact_drops_the_log_up_to_the_snapshot_but_keeps_its_term() -> None:
    three = Cluster(config=NO_WINDOW)
    three.elect(1)
    commit_some(three, 5)
    leader = three[1]
    leader.compact(Snapshot(index=4, term=leader.term_at(4), data=b"state@4"))
    assert leader.log.first_index() == 5 and leader.term_at(4) == 1 and leader.term_at(3) is None
    assert leader.status().snapshot_index == 4


def test_compact_keeps_the_last_catch_up_entries_before_the_snapshot() -> None:
    three = Cluster(config=RaftConfig(catch_up_entries=2))
    three.elect(1)
    commit_some(three, 6)
    leader = three[1]
    leader.compact(Snapshot(index=4, term=1, data=b"state@4"))
    assert (leader.log.first_index(), leader.term_at(3), leader.term_at(2)) == (3, 1, None)
    leader.compact(Snapshot(index=6, term=1, data=b"state@6"))  # the window moves with the snapshot
    assert (leader.log.first_index(), leader.term_at(5), leader.term_at(4)) == (5, 1, None)
    assert leader.status().snapshot_index == 6


def test_compacting_beyond_what_was_applied_is_refused(three: Cluster) -> None:
    three.elect(1)
    with pytest.raises(ValueError):
        three[1].compact(Snapshot(index=9, term=1))


def test_a_follower_a_little_behind_is_sent_entries_not_the_snapshot() -> None:
    three = Cluster(config=RaftConfig(election_ticks=10, heartbeat_ticks=1, catch_up_entries=10))
    three.elect(1)
    three.cut = lambda m: 3 in (m.src, m.dst)  # node 3 holds entry 1 only
    commit_some(three, 6)
    leader = three[1]
    leader.compact(Snapshot(index=7, term=1, data=b"state@7"))
    sent: list[Message] = []
    three.cut = lambda m: bool(sent.append(m))  # record, deliver everything
    three.tick_all(leader.config.election_ticks)
    follower = three[3]
    assert not any(isinstance(m, InstallSnapshot) for m in sent)
    assert follower.log.snapshot.index == 0 and [e.index for e in follower.log.entries] == list(range(1, 8))
    assert (follower.commit, follower.log.last_index()) == (leader.commit, leader.log.last_index())


def test_a_follower_behind_the_window_is_sent_the_snapshot() -> None:
    three = Cluster(config=RaftConfig(election_ticks=10, heartbeat_ticks=1, catch_up_entries=3))
    three.elect(1)
    three.cut = lambda m: 3 in (m.src, m.dst)  # node 3 holds entry 1; the window will start at 5
    commit_some(three, 6)
    leader = three[1]
    leader.compact(Snapshot(index=7, term=1, data=b"state@7"))
    sent: list[Message] = []
    three.cut = lambda m: bool(sent.append(m))
    three.tick_all(leader.config.election_ticks)
    follower = three[3]
    assert any(isinstance(m, InstallSnapshot) and m.dst == 3 for m in sent)
    assert follower.log.snapshot == Snapshot(index=7, term=1, data=b"state@7")
    assert (follower.commit, follower.log.last_index()) == (leader.commit, leader.log.last_index())


def test_a_restart_accepts_a_window_before_the_snapshot_that_agrees_with_it() -> None:
    log = entries(1, 1, 2, 2, 2, 2)
    core = make_core(1, hard_state=HardState(term=2, commit=5), snapshot=Snapshot(4, 2, b"s"), entries=log[1:])
    assert (core.log.first_index(), core.term_at(2), core.term_at(4), core.log.last_index()) == (2, 1, 2, 6)
    assert [e.index for e in drain(core).committed] == [5]  # the window is covered by the snapshot: not reapplied


@pytest.mark.parametrize(
    ("snapshot", "log"),
    [
        (Snapshot(3, 2, b"s"), entries(1, 1, 1, 1)),  # holds index 3 with another term than the snapshot's
        (Snapshot(4, 1, b"s"), entries(1, 1)),  # ends before the snapshot: nothing shows it agrees
        (Snapshot(2, 1, b"s"), entries(1, 1, start=4)),  # a gap after the snapshot
    ],
    ids=["disagrees-at-the-snapshot", "stops-short-of-the-snapshot", "gap-after-the-snapshot"],
)
def test_a_restart_refuses_entries_that_do_not_fit_the_snapshot(snapshot: Snapshot, log: list[Entry]) -> None:
    with pytest.raises(LogInvariantError):
        make_core(1, hard_state=HardState(term=2), snapshot=snapshot, entries=log)


# -- InstallSnapshot in chunks ----------------------------------------------------------------------------


def test_a_follower_behind_the_leaders_snapshot_receives_install_snapshot() -> None:
    three = Cluster(config=NO_WINDOW)
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


def test_a_snapshot_of_many_chunks_arrives_whole_and_is_handed_out_only_when_complete() -> None:
    cluster, held = follower_behind_a_snapshot()
    follower, chunks = cluster[3], []
    while held.messages:
        m = held.take()
        if isinstance(m, InstallSnapshot):
            assert follower.log.snapshot.index == 0  # nothing is handed to the runtime before the last chunk
            chunks.append(m)
        held.deliver(m)
    assert [(m.offset, len(m.data)) for m in chunks] == [(o, min(8, 100 - o)) for o in range(0, 100, 8)]
    assert follower.log.snapshot == Snapshot(index=7, term=1, data=STATE)
    leader = cluster[1]
    assert (follower.commit, follower.log.last_index()) == (leader.commit, leader.log.last_index())


def test_the_leader_sends_the_next_chunk_only_once_the_last_one_is_acknowledged() -> None:
    cluster, held = follower_behind_a_snapshot()
    cluster[1].propose(b"more")  # new entries do not push anything past the transfer either
    cluster.tick_all(PATIENCE - 1)
    assert [m.offset for m in held.chunks()] == [0]
    held.deliver(held.take())  # the follower stores the chunk; its ack is held
    assert held.chunks() == [] and snapshot_answers(held.messages)[0].next_offset == 8
    held.deliver(held.take())  # the leader hears the ack
    assert [(m.offset, len(m.data)) for m in held.chunks()] == [(8, 8)]


def test_a_lost_chunk_is_resent_alone_after_a_timeout() -> None:
    cluster, held = follower_behind_a_snapshot()
    for _ in range(4):  # chunk 0, its ack, chunk 8, its ack
        held.deliver(held.take())
    lost = held.take()
    assert isinstance(lost, InstallSnapshot) and lost.offset == 16
    cluster.tick_all(PATIENCE)
    assert [(m.offset, m.data) for m in held.chunks()] == [(16, lost.data)]  # that chunk again, nothing before it
    rest = held.deliver_all()
    assert [m.offset for m in rest] == list(range(16, 100, 8))
    assert cluster[3].log.snapshot == Snapshot(index=7, term=1, data=STATE)


def test_a_follower_restarted_mid_transfer_starts_over_from_the_first_chunk() -> None:
    cluster, held = follower_behind_a_snapshot()
    for _ in range(6):  # chunks 0, 8 and 16 arrive and are acknowledged
        held.deliver(held.take())
    before = cluster[3]
    # The partial snapshot lived in memory only: the restarted follower has its persisted log and nothing else.
    restarted = make_core(3, config=SMALL_CHUNKS, hard_state=HardState(term=before.term), entries=before.log.entries)
    cluster.cores[3] = restarted
    held.deliver(held.take())  # chunk 24 reaches the restarted follower
    assert [(m.next_offset, m.done) for m in snapshot_answers(held.messages)] == [(0, False)]
    held.deliver(held.take())
    assert [m.offset for m in held.chunks()] == [0]
    held.deliver_all()
    assert cluster[3].log.snapshot == Snapshot(index=7, term=1, data=STATE)


def test_a_newer_snapshot_supersedes_a_partial_one() -> None:
    follower = make_core(2, config=SMALL_CHUNKS, hard_state=HardState(term=1), entries=entries(1))
    older, newer = Snapshot(10, 1, bytes(40)), Snapshot(20, 1, b"abcdefgh" * 3)
    for chunk in chunks_of(older, 8, term=1)[:2]:
        follower.step(chunk)
    drain(follower)
    answers = []
    for chunk in chunks_of(newer, 8, term=1):
        follower.step(chunk)
        rd = drain(follower)
        answers += [(m.next_offset, m.done) for m in snapshot_answers(rd.messages)]
    assert answers == [(8, False), (16, False), (0, True)]
    assert rd.snapshot == newer and follower.log.snapshot == newer


def test_a_chunk_from_a_new_leader_discards_the_partial_snapshot_of_the_old_one() -> None:
    follower = make_core(2, config=SMALL_CHUNKS, hard_state=HardState(term=1), entries=entries(1))
    snapshot = Snapshot(10, 1, bytes(range(40)))
    for chunk in chunks_of(snapshot, 8, term=1)[:2]:
        follower.step(chunk)
    drain(follower)
    follower.step(chunks_of(snapshot, 8, term=2, src=3)[2])  # the same snapshot, from the leader of term 2
    assert [(m.dst, m.term, m.next_offset) for m in snapshot_answers(drain(follower).messages)] == [(3, 2, 0)]
    for chunk in chunks_of(snapshot, 8, term=2, src=3):
        follower.step(chunk)
    assert drain(follower).snapshot == snapshot


def test_a_follower_buffers_only_in_order_and_never_beyond_the_declared_size() -> None:
    follower = make_core(2, config=SMALL_CHUNKS, hard_state=HardState(term=1), entries=entries(1))
    first = InstallSnapshot(1, 2, 1, 10, 1, offset=0, total=12, data=b"01234567")
    refused = [
        InstallSnapshot(1, 2, 1, 10, 1, offset=8, total=12, data=b"89abcdef"),  # beyond the declared 12 bytes
        InstallSnapshot(1, 2, 1, 10, 1, offset=8, total=99, data=b"89ab"),  # declares another size
        InstallSnapshot(1, 2, 1, 10, 1, offset=4, total=12, data=b"4567"),  # goes backwards
        InstallSnapshot(1, 2, 1, 10, 1, offset=10, total=12, data=b"ab"),  # skips ahead
    ]
    answers = []
    for m in [first, *refused]:
        follower.step(m)
        answers += [m.next_offset for m in snapshot_answers(drain(follower).messages)]
    assert answers == [8, 8, 8, 8, 8]  # each refused chunk is answered with the offset still expected
    follower.step(InstallSnapshot(1, 2, 1, 10, 1, offset=8, total=12, data=b"89ab"))
    assert drain(follower).snapshot == Snapshot(10, 1, b"0123456789ab")


def test_an_installed_snapshot_is_handed_out_to_persist_and_replaces_the_state_machine() -> None:
    follower = make_core(2, hard_state=HardState(term=1), entries=entries(1, 1))
    snapshot = Snapshot(index=10, term=2, data=b"state@10")
    [chunk] = chunks_of(snapshot, CONFIG.snapshot_chunk_bytes, term=2)
    follower.step(chunk)
    rd = follower.ready()
    assert rd.snapshot == snapshot and rd.committed == []
    assert rd.messages == [InstallSnapshotResponse(2, 1, 2, index=10, done=True, match_index=10)]
    follower.advance(rd)
    assert follower.status().applied == 10 and follower.log.last_index() == 10
    follower.step(AppendEntries(1, 2, 2, 10, 2, (Entry(2, 11, data=b"x"),), leader_commit=11))
    assert [e.index for e in drain(follower).committed] == [11]


def test_a_snapshot_the_follower_already_holds_keeps_its_log_and_ends_the_transfer_at_its_first_chunk() -> None:
    follower = make_core(2, config=SMALL_CHUNKS, hard_state=HardState(term=1), entries=entries(1, 1, 1, 1))
    follower.step(chunks_of(Snapshot(index=2, term=1, data=STATE), 8, term=1)[0])
    rd = drain(follower)
    assert rd.snapshot is None and follower.log.last_index() == 4 and follower.commit == 2
    assert [e.index for e in rd.committed] == [1, 2]
    assert [(m.done, m.match_index) for m in snapshot_answers(rd.messages)] == [(True, 2)]


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


# -- restarting ----------------------------------------------------------------------------------------------


def test_a_restart_keeps_term_vote_and_log_and_reapplies_committed_entries_after_the_snapshot() -> None:
    log = entries(1, 1, 2, 2, 2)
    core = make_core(1, hard_state=HardState(term=2, vote=3, commit=4), snapshot=Snapshot(2, 1, b"s"), entries=log[2:])
    assert (core.term, core.vote, core.commit) == (2, 3, 4)
    rd = drain(core)
    assert [e.index for e in rd.committed] == [3, 4]


def test_a_restart_with_a_durable_state_machine_does_not_reapply() -> None:
    core = make_core(1, hard_state=HardState(term=2, commit=4), entries=entries(1, 1, 2, 2, 2), applied=4)
    assert drain(core).committed == []
