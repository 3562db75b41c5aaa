"""The Raft protocol as a pure state machine: no sockets, clock, disk, asyncio or global randomness.

Inputs are `tick()` (one unit of logical time), `step(message)` and `propose(data)`; the output is one
bundle, `Ready`, saying what to persist, what to send and what may be applied. The runtime drives it:

    while core.has_ready():
        rd = core.ready()
        storage.save(rd.hard_state, rd.snapshot, rd.entries)   # durable (fsynced) first ...
        transport.send(rd.messages)                             # ... only then may anyone hear of it
        state_machine.apply(rd.committed)
        serve(rd.read_states)
        core.advance(rd)

`step`, `tick` and `propose` may be called between `ready()` and `advance()` (e.g. while the fsync
runs); the next `ready()` only holds what is new. Call `ready()` again only after `advance()`.
"""

from __future__ import annotations

import enum
import random
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pygmy.raft.log import RaftLog
from pygmy.raft.messages import (
    AppendEntries,
    AppendEntriesResponse,
    Entry,
    EntryKind,
    HardState,
    InstallSnapshot,
    InstallSnapshotResponse,
    Message,
    RequestVote,
    RequestVoteResponse,
    Role,
    Snapshot,
    TermProbe,
    TermProbeResponse,
    TimeoutNow,
)
from pygmy.raft.snapshot_transfer import IncomingSnapshot, OutgoingSnapshot


@dataclass(frozen=True)
class RaftConfig:
    # An election starts after a random timeout in [election_ticks, 2 * election_ticks) ticks.
    election_ticks: int = 10
    heartbeat_ticks: int = 1
    pre_vote: bool = True
    check_quorum: bool = True
    max_entries_per_message: int = 256
    # Optimistic replication: at most this many AppendEntries unacknowledged per follower.
    max_inflight_messages: int = 64
    # InstallSnapshot carries the snapshot in chunks of at most this many bytes, one unacknowledged at a time.
    snapshot_chunk_bytes: int = 1 << 20
    # Compaction keeps this many entries before the snapshot, so that a follower a little behind is sent
    # entries rather than the whole snapshot (etcd's SnapshotCatchUpEntries); 0 keeps none.
    catch_up_entries: int = 1000

    def __post_init__(self) -> None:
        if self.snapshot_chunk_bytes < 1 or self.catch_up_entries < 0:
            raise ValueError("snapshot_chunk_bytes must be positive and catch_up_entries not negative")


class NotLeader(Exception):
    """Raised by propose/read_index/transfer_leadership on a node that is not the leader."""

    def __init__(self, leader: int | None) -> None:
        super().__init__(f"not the leader; leader is {leader}")
        self.leader = leader


@dataclass(frozen=True)
class ReadState:
    """A linearizable read with context `ctx` may be served once the state machine has applied `index`."""

    ctx: int
    index: int


@dataclass(frozen=True)
class Status:
    id: int
    role: Role
    term: int
    leader: int | None
    commit: int
    applied: int
    last_index: int
    snapshot_index: int
    catching_up: bool = False  # a rejoined member that lost its disk: neither votes nor counts yet


@dataclass
class Ready:
    """Everything the runtime must do next, in this order."""

    hard_state: HardState | None = None  # persist (atomically, fsynced) before sending messages
    snapshot: Snapshot | None = None  # persist, discard every stored entry, restore the state machine from it
    entries: list[Entry] = field(default_factory=list)  # persist: discard stored entries >= entries[0].index, append
    messages: list[Message] = field(default_factory=list)  # send only after the above is durable
    committed: list[Entry] = field(default_factory=list)  # apply in order (only committed; skip EntryKind.NOOP)
    read_states: list[ReadState] = field(default_factory=list)  # serve these reads once applied >= index
    failed_reads: list[int] = field(default_factory=list)  # ctx of reads dropped (leadership lost): retry elsewhere
    # False when only the commit index changed: the runtime may then write without fsync (it is recomputable).
    must_sync: bool = False

    def is_empty(self) -> bool:
        return not (
            self.hard_state
            or self.snapshot
            or self.entries
            or self.messages
            or self.committed
            or self.read_states
            or self.failed_reads
        )


class _Replication(enum.Enum):
    PROBE = "probe"  # one AppendEntries at a time until the follower's match is found
    REPLICATE = "replicate"  # optimistic: stream entries without waiting, bounded in flight
    SNAPSHOT = "snapshot"  # a snapshot is being sent in chunks (`_Progress.snapshot`); send nothing else


@dataclass
class _Progress:
    """What the leader knows about one follower's log."""

    match: int = 0
    next: int = 1
    state: _Replication = _Replication.PROBE
    probe_sent: bool = False
    inflight: deque[int] = field(default_factory=deque)  # last index of each unacknowledged AppendEntries
    ticks_without_ack: int = 0
    snapshot: OutgoingSnapshot | None = None  # the transfer under way in state SNAPSHOT
    heartbeat_acked: int = 0  # highest heartbeat_seq echoed back in this term (ReadIndex)
    commit_sent: int = 0  # the follower was told it may commit up to here
    # Counts toward quorums: known from its AppendEntries responses, which say whether it is catching up.
    voter: bool = False

    def become_probe(self, next_index: int) -> None:
        self.state = _Replication.PROBE
        self.next = max(self.match + 1, next_index)
        self.probe_sent = False
        self.inflight.clear()
        self.ticks_without_ack = 0
        self.snapshot = None

    def forget_match(self, last_index: int) -> None:
        """The follower's log now ends at `last_index`, below what it matched (it lost its disk): start over.

        Lowering `match` is the conservative direction: it can only delay commits (the commit index never
        decreases), and the probe that follows finds where the logs agree again.
        """
        self.match = last_index
        self.commit_sent = min(self.commit_sent, last_index)
        self.become_probe(last_index + 1)

    def become_replicate(self) -> None:
        self.state = _Replication.REPLICATE
        self.next = self.match + 1
        self.inflight.clear()
        self.ticks_without_ack = 0

    def acknowledge(self, index: int) -> bool:
        """A follower confirmed it matches up to `index`; True if that is news."""
        while self.inflight and self.inflight[0] <= index:
            self.inflight.popleft()
        if index <= self.match:
            return False
        self.ticks_without_ack = 0
        self.match = index
        self.next = max(self.next, index + 1)
        return True


@dataclass
class _PendingRead:
    ctx: int
    index: int = 0
    seq: int = 0  # heartbeat round confirming leadership; 0 = not started (no entry of this term committed yet)


class RaftCore:
    """One Raft node's protocol state. Deterministic: the same inputs (and rng seed) give the same outputs.

    A few safety decisions are small methods of their own (`_apply_limit`, `_may_commit_by_counting`,
    `_grant_vote`, `_hard_state`) so that the simulator can plant known mistakes in a subclass
    (`pygmy.raft.sim.bugs`) and show that it catches them; nothing here knows about those mistakes.
    """

    def __init__(
        self,
        node_id: int,
        members: Sequence[int],
        config: RaftConfig,
        rng: random.Random,
        *,
        hard_state: HardState = HardState(),
        snapshot: Snapshot | None = None,
        entries: Sequence[Entry] = (),
        applied: int | None = None,
    ) -> None:
        """Start (or restart) from what was persisted.

        `entries` must be contiguous and either follow `snapshot` (start at snapshot.index + 1) or start at or
        before it, in which case they must hold the entry at snapshot.index with the snapshot's term: those up
        to it are then the trailing window that `compact` keeps (see `pygmy.raft.log`); LogInvariantError
        otherwise. `applied` is the index the state machine already reflects (default: the snapshot's index,
        i.e. the state machine was restored from the snapshot and committed entries after it are handed out
        again for applying).
        """
        self.id = node_id
        self.members = tuple(sorted(set(members)))
        self.peers = tuple(m for m in self.members if m != node_id)
        self.quorum = len(self.members) // 2 + 1
        self.config = config
        self.rng = rng

        self.log = RaftLog(snapshot, entries)
        self.term = hard_state.term
        self.vote = hard_state.vote
        # A member that lost its disk and rejoined: no votes, no quorums, until its log reaches catch_up_to.
        self.catching_up = hard_state.catching_up
        self.catch_up_to = hard_state.catch_up_to
        # Peers that told this catching-up member their term; a target is set only once all have (see
        # _on_term_probe). A target already set was set that way, so it needs no new round.
        self._probe_replies: set[int] = set()
        self._probed = not self.catching_up or self.catch_up_to > 0
        self._target_term = self.term  # the term of the leader whose last index is catch_up_to
        self._durable_last = self.log.last_index()  # what the runtime reported durable, for catching up
        self.commit = min(max(hard_state.commit, self.log.snapshot.index), self.log.last_index())
        self.applied = self.log.snapshot.index if applied is None else applied
        self._applying_to = self.applied  # committed entries up to here were handed out to apply
        self._handed_hard_state = hard_state  # what the last Ready asked the disk to hold

        self.role = Role.FOLLOWER
        self.leader: int | None = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._election_timeout = self._random_timeout()
        self._votes: dict[int, bool] = {}
        self._progress: dict[int, _Progress] = {}
        self._recent_active: set[int] = set()
        self._heartbeat_seq = 0
        self._pending_reads: list[_PendingRead] = []
        self._transfer_target: int | None = None
        self._transfer_elapsed = 0

        self._messages: list[Message] = []
        self._read_states: list[ReadState] = []
        self._failed_reads: list[int] = []
        self._pending_snapshot: Snapshot | None = None
        self._incoming_snapshot: IncomingSnapshot | None = None  # chunks of a snapshot from the leader so far

    # -- inputs ------------------------------------------------------------------------------------------

    def tick(self) -> None:
        """Advance logical time by one tick: election timeouts, heartbeats, check-quorum."""
        if self.role is Role.LEADER:
            self._tick_leader()
        else:
            self._election_elapsed += 1
            if self.catching_up:
                self._probe_terms()
            elif self._election_elapsed >= self._election_timeout and self.id in self.members:
                self._campaign(transfer=False)

    def step(self, message: Message) -> None:
        """Handle one message from a peer."""
        if message.dst != self.id or message.src not in self.peers:
            return
        if isinstance(message, TermProbe | TermProbeResponse):
            self._on_term_probe(message)  # outside the term rules: a probe must not disturb anyone's term
            return
        if message.term > self.term:
            if not self._accept_higher_term(message):
                return
        elif message.term < self.term:
            self._answer_stale(message)
            return  # replies (and requests) from older terms say nothing about the current one
        if self.role is Role.LEADER and message.term == self.term:
            self._recent_active.add(message.src)
        handler = self._handlers[type(message)]
        handler(self, message)

    def propose(self, data: bytes) -> tuple[int, int]:
        """Append a command; return its (index, term). Raises NotLeader.

        The proposal took effect iff the entry committed at `index` has `term` (the runtime sees that in
        `Ready.committed`). Many proposals before one `ready()` share one Ready (one fsync).
        """
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if self._transfer_target is not None:
            raise NotLeader(self._transfer_target)  # a transfer is under way: send it to the next leader
        index = self._append_local(EntryKind.COMMAND, data)
        self._broadcast_append()
        return index, self.term

    def read_index(self, ctx: int) -> None:
        """Start a linearizable read (ReadIndex). Its ReadState appears in a later Ready. Raises NotLeader."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        self._pending_reads.append(_PendingRead(ctx))
        self._start_read_rounds()
        self._release_confirmed_reads()

    def cancel_read(self, ctx: int) -> None:
        """Forget a read nobody waits for any more (its caller timed out), so it cannot pile up."""
        self._pending_reads = [read for read in self._pending_reads if read.ctx != ctx]

    def transfer_leadership(self, target: int) -> None:
        """Hand leadership to `target` (catch it up, then TimeoutNow). Raises NotLeader."""
        if self.role is not Role.LEADER:
            raise NotLeader(self.leader)
        if target == self.id:
            return
        if target not in self.peers:
            raise ValueError(f"{target} is not a member")
        self._transfer_target = target
        self._transfer_elapsed = 0
        if self._progress[target].match == self.log.last_index():
            self._send(TimeoutNow(self.id, target, self.term))
        else:
            self._send_append(target)

    def compact(self, snapshot: Snapshot) -> None:
        """The state machine was snapshotted at an applied index: let the snapshot stand for the log up to it.

        The last `config.catch_up_entries` entries up to the snapshot stay in memory, so a follower a little
        behind is sent entries instead of the snapshot. Storage need not keep them: after a restart the
        window is empty until the next compaction (storage may return them, see `__init__`).
        """
        if snapshot.index > self.applied:
            raise ValueError(f"snapshot at {snapshot.index} is beyond applied {self.applied}")
        self.log.compact(snapshot, keep=self.config.catch_up_entries)

    # -- output ------------------------------------------------------------------------------------------

    def has_ready(self) -> bool:
        return bool(
            self._messages
            or self._read_states
            or self._failed_reads
            or self._pending_snapshot is not None
            or self.log.last_index() > self.log.handed_to
            or self._hard_state() != self._handed_hard_state
            or self._apply_limit() > self._applying_to
            or self._has_commit_news()
        )

    def ready(self) -> Ready:
        if self.role is Role.LEADER:
            self._send_commit_news()
        hard_state = self._hard_state()
        changed = hard_state != self._handed_hard_state
        entries = self.log.unpersisted()
        previous = self._handed_hard_state
        rd = Ready(
            hard_state=hard_state if changed else None,
            snapshot=self._pending_snapshot,
            entries=entries,
            messages=self._messages,
            read_states=self._read_states,
            failed_reads=self._failed_reads,
        )
        rd.must_sync = bool(entries or rd.snapshot or previous.promises() != hard_state.promises())
        self._handed_hard_state = hard_state
        self.log.handed_to = self.log.last_index()
        self._pending_snapshot = None
        self._messages, self._read_states, self._failed_reads = [], [], []
        first = max(self._applying_to, rd.snapshot.index if rd.snapshot else 0) + 1
        rd.committed = self.log.slice(first, self._apply_limit())
        if rd.committed:
            self._applying_to = rd.committed[-1].index
        elif rd.snapshot:
            self._applying_to = max(self._applying_to, rd.snapshot.index)
        return rd

    def advance(self, ready: Ready) -> None:
        """The runtime has persisted, sent and applied everything that `ready` held."""
        if ready.snapshot is not None:
            self.applied = max(self.applied, ready.snapshot.index)
        if ready.committed:
            self.applied = max(self.applied, ready.committed[-1].index)
        if ready.entries:
            self.log.mark_persisted(ready.entries[-1])
            if self.role is Role.LEADER:
                self._maybe_commit()
        if self.catching_up:
            # What Readys made durable (not what arrived since, which is not on disk yet).
            if ready.entries or ready.snapshot:
                self._durable_last = ready.entries[-1].index if ready.entries else ready.snapshot.index  # type: ignore[union-attr]
            self._finish_catching_up(min(self._durable_last, self.log.persisted_to))

    def status(self) -> Status:
        return Status(
            id=self.id,
            role=self.role,
            term=self.term,
            leader=self.leader,
            commit=self.commit,
            applied=self.applied,
            last_index=self.log.last_index(),
            snapshot_index=self.log.snapshot.index,
            catching_up=self.catching_up,
        )

    def term_at(self, index: int) -> int | None:
        """Term of the entry at `index` (the snapshot's term at its index); None if unknown or compacted."""
        return self.log.term_at(index)

    def _hard_state(self) -> HardState:
        """What the disk must hold before this node's messages go out: its term, vote and commit."""
        return HardState(self.term, self.vote, self.commit, self.catching_up, self.catch_up_to)

    def _apply_limit(self) -> int:
        """The highest index that may be handed out for applying: only what is committed."""
        return self.commit

    def _send(self, message: Message) -> None:
        self._messages.append(message)

    # -- roles -------------------------------------------------------------------------------------------

    def _random_timeout(self) -> int:
        ticks = self.config.election_ticks
        return ticks + self.rng.randrange(ticks)

    def _set_term(self, term: int) -> None:
        if term != self.term:
            self.term = term
            self.vote = None

    def _reset(self, term: int) -> None:
        self._set_term(term)
        self.leader = None
        self._election_elapsed = 0
        self._heartbeat_elapsed = 0
        self._election_timeout = self._random_timeout()
        self._votes = {}
        self._progress = {}
        self._recent_active = set()
        self._transfer_target = None
        self._failed_reads.extend(read.ctx for read in self._pending_reads)
        self._pending_reads = []
        self._incoming_snapshot = None  # a transfer from the leader we followed until now is void

    def _become_follower(self, term: int, leader: int | None) -> None:
        self._reset(term)
        self.role = Role.FOLLOWER
        self.leader = leader

    def _campaign(self, *, transfer: bool) -> None:
        if self.config.pre_vote and not transfer:
            self._become_pre_candidate()
        else:
            self._become_candidate(transfer=transfer)

    def _become_pre_candidate(self) -> None:
        # A pre-vote asks "would you vote for me?" without touching anyone's term, so a node cut off from
        # the cluster cannot disrupt it with an ever-growing term when it returns (thesis §9.6).
        self._reset(self.term)
        self.role = Role.PRE_CANDIDATE
        self._request_votes(self.term + 1, pre_vote=True, transfer=False)

    def _become_candidate(self, *, transfer: bool) -> None:
        self._reset(self.term + 1)
        self.role = Role.CANDIDATE
        self.vote = self.id
        self._request_votes(self.term, pre_vote=False, transfer=transfer)

    def _request_votes(self, term: int, *, pre_vote: bool, transfer: bool) -> None:
        self._votes = {self.id: True}
        if self._tally_votes():
            return
        last_index, last_term = self.log.last_index(), self.log.last_term()
        for peer in self.peers:
            self._send(RequestVote(self.id, peer, term, last_index, last_term, pre_vote=pre_vote, transfer=transfer))

    def _tally_votes(self) -> bool:
        """Act on a decided election; True if it is decided."""
        granted = sum(self._votes.values())
        if granted >= self.quorum:
            if self.role is Role.PRE_CANDIDATE:
                self._become_candidate(transfer=False)
            else:
                self._become_leader()
            return True
        if len(self._votes) - granted >= self.quorum:
            self._become_follower(self.term, None)
            return True
        return False

    def _become_leader(self) -> None:
        self._reset(self.term)
        self.role = Role.LEADER
        self.leader = self.id
        for peer in self.peers:
            self._progress[peer] = _Progress(next=self.log.last_index() + 1)
        # An entry of the new term lets the leader commit (and so learn the commit index of) earlier terms.
        self._append_local(EntryKind.NOOP, b"")
        self._broadcast_append()

    def _append_local(self, kind: int, data: bytes) -> int:
        index = self.log.last_index() + 1
        self.log.append([Entry(self.term, index, kind, data)])
        return index

    # -- terms -------------------------------------------------------------------------------------------

    def _in_lease(self) -> bool:
        """Heard from a live leader within the minimum election timeout (check-quorum keeps that honest)."""
        return (
            self.config.check_quorum
            and self.leader is not None
            and self._election_elapsed < self.config.election_ticks
        )

    def _accept_higher_term(self, m: Message) -> bool:
        """A message from a higher term; False if it is to be ignored altogether."""
        if isinstance(m, RequestVote):
            if self._in_lease() and not m.transfer:
                return False  # a leader is alive: don't let a partitioned node depose it
            if m.pre_vote:
                return True  # pre-votes never change terms
        elif isinstance(m, RequestVoteResponse) and m.pre_vote and m.granted:
            return True  # carries the term the pre-candidate *would* use
        leader = m.src if isinstance(m, AppendEntries | InstallSnapshot) else None
        elapsed = self._election_elapsed
        self._become_follower(m.term, leader)
        if leader is None:
            # A higher term alone is no sign of a live leader: keep the election clock running, or candidates
            # with stale logs could keep the one node able to win from ever standing (thesis §3.4). Hearing
            # from a leader or granting a vote restarts it.
            self._election_elapsed = elapsed
        return True

    def _answer_stale(self, m: Message) -> None:
        if isinstance(m, AppendEntries | InstallSnapshot):
            # A deposed leader may never learn the new term otherwise (pre-vote keeps others from reaching it).
            self._send(AppendEntriesResponse(self.id, m.src, self.term, success=False))
        elif isinstance(m, RequestVote) and m.pre_vote:
            self._send(RequestVoteResponse(self.id, m.src, self.term, granted=False, pre_vote=True))

    # -- elections ---------------------------------------------------------------------------------------

    def _on_request_vote(self, m: RequestVote) -> None:
        up_to_date = self.log.is_up_to_date(m.last_log_term, m.last_log_index)
        if self.catching_up:
            # It forgot the votes it gave before losing its disk, and the entries it acknowledged: a vote now
            # could elect a second leader in a term it already voted in, or one that lacks a committed entry.
            can_vote = False
        elif m.pre_vote:
            can_vote = m.term > self.term
        else:
            can_vote = self.vote == m.src or (self.vote is None and self.leader is None)
        if not (can_vote and up_to_date):
            self._send(RequestVoteResponse(self.id, m.src, self.term, granted=False, pre_vote=m.pre_vote))
            return
        if not m.pre_vote:
            self._grant_vote(m.src)
        # The grant sits in the same Ready as the hard state holding the vote, so it goes out only once durable.
        self._send(RequestVoteResponse(self.id, m.src, m.term, granted=True, pre_vote=m.pre_vote))

    def _grant_vote(self, candidate: int) -> None:
        """Vote for `candidate` in this term; the vote reaches the disk with the next Ready's hard state."""
        self.vote = candidate
        self._election_elapsed = 0

    def _on_request_vote_response(self, m: RequestVoteResponse) -> None:
        expected = Role.PRE_CANDIDATE if m.pre_vote else Role.CANDIDATE
        if self.role is not expected:
            return
        if m.pre_vote and m.granted and m.term != self.term + 1:
            return
        self._votes.setdefault(m.src, m.granted)
        self._tally_votes()

    def _on_timeout_now(self, m: TimeoutNow) -> None:
        if self.role is not Role.LEADER and not self.catching_up:
            self._campaign(transfer=True)

    # -- replication: follower side ------------------------------------------------------------------------

    def _hear_from_leader(self, leader: int) -> None:
        if self.role is not Role.FOLLOWER:
            self._become_follower(self.term, leader)
        self.leader = leader
        self._election_elapsed = 0

    def _on_append_entries(self, m: AppendEntries) -> None:
        self._hear_from_leader(m.src)
        if self.catching_up and self._probed and (not self.catch_up_to or self.term > self._target_term):
            # Every entry committed before this member lost its disk is in this leader's log (Leader
            # Completeness), so at most at its last index: once the member holds that much, it holds them all.
            # A leader of a later term may hold less than an earlier one did (an uncommitted tail it lacks):
            # its own last index becomes the target, or the member could wait for an index no log reaches.
            self.catch_up_to = max(1, m.leader_last_index)
            self._target_term = self.term
        prev, prev_term, entries = m.prev_log_index, m.prev_log_term, m.entries
        last_matched = m.prev_log_index + len(m.entries)
        if prev < self.log.snapshot.index:
            # Everything up to our snapshot is committed, so it matches the leader's log: skip it.
            skip = self.log.snapshot.index - prev
            entries = entries[skip:]
            prev, prev_term = self.log.snapshot.index, self.log.snapshot.term
        if self.log.term_at(prev) != prev_term:
            self._reject_append(m)
            return
        self.log.merge(entries, self.commit)
        # Only entries this message matched are known to agree with the leader's log (copycat #265).
        self._advance_commit(min(m.leader_commit, last_matched))
        self._send(
            AppendEntriesResponse(
                self.id,
                m.src,
                self.term,
                success=True,
                match_index=last_matched,
                heartbeat_seq=m.heartbeat_seq,
                catching_up=self.catching_up,
            )
        )

    def _reject_append(self, m: AppendEntries) -> None:
        prev = m.prev_log_index
        if prev > self.log.last_index():
            conflict_index, conflict_term = self.log.last_index() + 1, 0
        else:
            conflict_term = self.log.term_at(prev) or 0
            conflict_index = self.log.first_index_of_term_at(prev)
        self._send(
            AppendEntriesResponse(
                self.id,
                m.src,
                self.term,
                success=False,
                conflict_index=conflict_index,
                conflict_term=conflict_term,
                heartbeat_seq=m.heartbeat_seq,
                reject_index=prev,
                catching_up=self.catching_up,
            )
        )

    # -- rejoining after a lost disk ----------------------------------------------------------------------

    def _probe_terms(self) -> None:
        """Ask the peers that have not answered yet for their terms, every heartbeat interval."""
        if self._probed or self._election_elapsed % max(1, self.config.heartbeat_ticks):
            return
        for peer in self.peers:
            if peer not in self._probe_replies:
                self._send(TermProbe(self.id, peer, self.term))

    def _on_term_probe(self, m: TermProbe | TermProbeResponse) -> None:
        if isinstance(m, TermProbe):
            self._send(TermProbeResponse(self.id, m.src, self.term))
            return
        if not self.catching_up or self._probed:
            return
        if m.term > self.term:
            elapsed = self._election_elapsed
            self._become_follower(m.term, None)
            self._election_elapsed = elapsed
        self._probe_replies.add(m.src)
        # A member may have voted, before it lost its disk, in a term only some peers know. A vote can still
        # count only for a candidate that is alive in that term (one that restarted has lost its tally), and
        # that candidate made the term durable before asking: so once *every* peer has answered, its term is
        # at least every term in which a vote it forgot could still count. (A quorum is not enough: the
        # candidate's requests to the others may still be in flight.) From then on its term is at least
        # that, so it never votes in a term it forgot, and no deposed leader can recruit it. It waits for all
        # peers: a member that lost its disk is an operator's event, and waiting is the price of not guessing.
        if len(self._probe_replies) == len(self.peers):
            self._probed = True

    def _finish_catching_up(self, durable: int) -> None:
        """A member that lost its disk votes again once its durable log reaches what it was told to catch up to."""
        if not self.catch_up_to or durable < self.catch_up_to or self.log.term_at(durable) is None:
            return
        self.catching_up, self.catch_up_to = False, 0
        if self.vote is None and self.leader is not None:
            # It may have voted in this term before losing its disk: standing with the leader it caught up
            # with keeps it from granting a second vote in this term.
            self.vote = self.leader

    def _advance_commit(self, index: int) -> None:
        # The commit index never decreases (PySyncObj #166).
        if index > self.commit:
            self.commit = index

    def _on_install_snapshot(self, m: InstallSnapshot) -> None:
        """Collect the leader's snapshot chunk by chunk; hand it to the runtime (Ready.snapshot) once whole."""
        self._hear_from_leader(m.src)
        if m.index <= self.commit or self.log.term_at(m.index) == m.snapshot_term:
            # We hold that entry already: keep the log, just commit up to it.
            self._advance_commit(m.index)
            if self._incoming_snapshot is not None and self._incoming_snapshot.index <= self.commit:
                self._incoming_snapshot = None  # what it would install we now hold
            self._answer_snapshot(m, done=True)
            return
        incoming = self._incoming_snapshot
        if incoming is not None and not incoming.is_for(m):
            if not incoming.is_superseded_by(m):
                return  # a delayed chunk of an older transfer from this leader
            incoming = self._incoming_snapshot = None
        if incoming is None:
            if m.offset != 0:
                self._answer_snapshot(m, next_offset=0)  # we hold nothing of it (e.g. restarted): start over
                return
            incoming = self._incoming_snapshot = IncomingSnapshot.start(m)
        incoming.accept(m)
        if not incoming.complete:
            self._answer_snapshot(m, next_offset=incoming.next_offset)
            return
        snap = incoming.snapshot()
        self._incoming_snapshot = None
        self.log.restore(snap)
        self.commit = snap.index
        self._applying_to = max(self._applying_to, snap.index)
        self._pending_snapshot = snap
        # In the Ready that persists the snapshot, so the leader hears of it only once it is durable.
        self._answer_snapshot(m, done=True)

    def _answer_snapshot(self, m: InstallSnapshot, *, next_offset: int = 0, done: bool = False) -> None:
        match = self.commit if done else 0
        self._send(
            InstallSnapshotResponse(
                self.id, m.src, self.term, m.index, next_offset, done, match, heartbeat_seq=m.heartbeat_seq
            )
        )

    # -- replication: leader side --------------------------------------------------------------------------

    def _tick_leader(self) -> None:
        self._election_elapsed += 1
        self._heartbeat_elapsed += 1
        if self._transfer_target is not None:
            self._transfer_elapsed += 1
            if self._transfer_elapsed >= self.config.election_ticks:
                self._transfer_target = None  # the target never took over: carry on leading
        if self._election_elapsed >= self.config.election_ticks:
            self._election_elapsed = 0
            active = sum(1 for p in self._recent_active if self._counts_toward_quorum(p))
            if self.config.check_quorum and active + 1 < self.quorum:
                self._become_follower(self.term, None)  # cut off from a quorum: stop serving as leader
                return
            self._recent_active = set()
        for peer in self.peers:
            self._watch_replication(self._progress[peer])
        if self._heartbeat_elapsed >= self.config.heartbeat_ticks:
            self._heartbeat_elapsed = 0
            self._broadcast_heartbeat()

    def _watch_replication(self, pr: _Progress) -> None:
        """Recover from lost messages: a stream that stays unacknowledged, or a lost snapshot, is retried."""
        patience = max(2, self.config.election_ticks // 2)
        if pr.state is _Replication.REPLICATE and pr.inflight:
            pr.ticks_without_ack += 1
            if pr.ticks_without_ack >= patience:
                pr.become_probe(pr.match + 1)
        elif pr.state is _Replication.SNAPSHOT and pr.snapshot is not None and pr.snapshot.tick(patience):
            self._send_snapshot_chunk(pr.snapshot)  # only the chunk in flight, not the whole snapshot

    def _broadcast_heartbeat(self) -> None:
        """Assert leadership, spread the commit index and, via heartbeat_seq, confirm pending reads."""
        for peer in self.peers:
            self._send_heartbeat(peer, self._progress[peer])

    def _send_heartbeat(self, peer: int, pr: _Progress) -> None:
        prev_term = self.log.term_at(pr.match)
        prev = pr.match if prev_term is not None else 0
        # Point at what the follower is known to hold: it then commits up to min(match, commit), no further.
        self._send(
            AppendEntries(
                self.id, peer, self.term, prev, prev_term or 0, (), self.commit, self._heartbeat_seq, self.log.last_index()
            )
        )
        pr.commit_sent = max(pr.commit_sent, min(prev, self.commit))

    def _send_commit_news(self) -> None:
        """Tell followers about commits they can apply that no message in this Ready tells them yet.

        Deferred to `ready()` so that many acknowledgements (each advancing the commit index) cost at most one
        extra message per follower per Ready, and none when an AppendEntries carries the news anyway.
        """
        for peer in self.peers:
            pr = self._progress[peer]
            if self._owes_commit(pr):
                self._send_heartbeat(peer, pr)

    def _has_commit_news(self) -> bool:
        return self.role is Role.LEADER and any(self._owes_commit(pr) for pr in self._progress.values())

    def _owes_commit(self, pr: _Progress) -> bool:
        # A follower behind our snapshot learns the commit index from the snapshot instead.
        return min(pr.match, self.commit) > pr.commit_sent and self.log.term_at(pr.match) is not None

    def _broadcast_append(self) -> None:
        for peer in self.peers:
            self._send_append(peer)

    def _send_append(self, peer: int) -> None:
        """Send the follower what it lacks, as far as its replication state allows."""
        pr = self._progress[peer]
        while True:
            if pr.state is _Replication.SNAPSHOT or (pr.state is _Replication.PROBE and pr.probe_sent):
                return
            if pr.state is _Replication.REPLICATE and len(pr.inflight) >= self.config.max_inflight_messages:
                return
            prev = pr.next - 1
            prev_term = self.log.term_at(prev)
            if prev_term is None:
                self._send_snapshot(peer, pr)
                return
            last = min(self.log.last_index(), prev + self.config.max_entries_per_message)
            entries = tuple(self.log.slice(pr.next, last))
            if pr.state is _Replication.REPLICATE and not entries:
                return
            self._send(
                AppendEntries(
                    self.id, peer, self.term, prev, prev_term, entries, self.commit, self._heartbeat_seq, self.log.last_index()
                )
            )
            pr.commit_sent = max(pr.commit_sent, min(last, self.commit))
            if pr.state is _Replication.PROBE:
                pr.probe_sent = True  # one probe at a time until we know where the logs agree
                return
            pr.next = last + 1
            pr.inflight.append(last)

    def _send_snapshot(self, peer: int, pr: _Progress) -> None:
        """Start sending our latest snapshot to `peer`, from its first chunk."""
        pr.state = _Replication.SNAPSHOT
        pr.inflight.clear()
        pr.snapshot = OutgoingSnapshot(peer, self.log.snapshot, self.config.snapshot_chunk_bytes)
        self._send_snapshot_chunk(pr.snapshot)

    def _send_snapshot_chunk(self, out: OutgoingSnapshot) -> None:
        snap = out.snapshot
        offset, data = out.next_chunk()
        self._send(
            InstallSnapshot(
                self.id, out.peer, self.term, snap.index, snap.term, offset, len(snap.data), data, self._heartbeat_seq
            )
        )

    def _on_append_response(self, m: AppendEntriesResponse) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self._progress[m.src]
        counted, pr.voter = pr.voter, not m.catching_up
        if pr.voter and not counted and m.success:
            self._maybe_commit()  # what it already holds counts from now on
        self._note_heartbeat_ack(pr, m.heartbeat_seq)
        if m.success:
            self._on_match(m.src, pr, m.match_index)
        elif self._lost_its_log(pr, m):
            pr.forget_match(m.conflict_index - 1)
            self._send_append(m.src)
        elif self._is_fresh_rejection(pr, m.reject_index):
            pr.become_probe(min(self._next_after_conflict(m), m.reject_index))
            self._send_append(m.src)

    def _lost_its_log(self, pr: _Progress, m: AppendEntriesResponse) -> bool:
        """The follower says its log ends below what it matched in this term: it restarted from an empty disk.

        Within a term a follower never loses entries it acknowledged, so only a wiped disk (or a rejection
        delayed from before the match, which costs one extra probe) shows a log ending below the match.
        """
        follower_last = m.conflict_index - 1
        return m.conflict_term == 0 and m.conflict_index > 0 and m.reject_index >= pr.match and follower_last < pr.match

    def _is_fresh_rejection(self, pr: _Progress, reject_index: int) -> bool:
        if reject_index <= pr.match:
            return False  # rejects something we already know matches: reordered or duplicated
        return pr.state is _Replication.REPLICATE or reject_index == pr.next - 1

    def _next_after_conflict(self, m: AppendEntriesResponse) -> int:
        """Skip a whole conflicting term per round trip instead of one entry (Raft §5.3, fast backtracking)."""
        if m.conflict_term:
            last = self.log.last_index_of_term(m.conflict_term)
            if last is not None:
                return last + 1
        return m.conflict_index

    def _on_install_snapshot_response(self, m: InstallSnapshotResponse) -> None:
        if self.role is not Role.LEADER:
            return
        pr = self._progress[m.src]
        self._note_heartbeat_ack(pr, m.heartbeat_seq)
        out = pr.snapshot if pr.state is _Replication.SNAPSHOT else None
        if m.done:
            if out is not None and m.match_index >= out.snapshot.index:
                pr.become_probe(m.match_index + 1)  # the transfer is over: replicate from what it holds
            self._on_match(m.src, pr, m.match_index)
        elif out is not None and m.index == out.snapshot.index:
            if m.next_offset == 0 and self.log.snapshot.index > out.snapshot.index:
                self._send_snapshot(m.src, pr)  # starting over anyway: send the newest snapshot instead
            elif out.on_ack(m.next_offset):
                self._send_snapshot_chunk(out)

    def _on_match(self, peer: int, pr: _Progress, index: int) -> None:
        news = pr.acknowledge(index)
        if pr.state is _Replication.PROBE:
            if index >= pr.next - 1:
                pr.become_replicate()  # found where our logs agree: stream from here
            else:
                pr.probe_sent = False  # an answer to something else (a heartbeat): the probe may be lost, resend
        if news:
            self._maybe_commit()
        self._send_append(peer)
        if peer == self._transfer_target and pr.match == self.log.last_index():
            self._send(TimeoutNow(self.id, peer, self.term))

    def _maybe_commit(self) -> bool:
        """Commit the highest index a quorum holds, if it is of this term (Raft §5.4.2, PySyncObj #169)."""
        # A member catching up after losing its disk counts toward no quorum (it may lack what it acknowledged).
        voters = [self._progress[p].match for p in self.peers if self._counts_toward_quorum(p)]
        matches = sorted([self.log.persisted_to, *voters], reverse=True)
        if len(matches) < self.quorum:
            return False
        index = matches[self.quorum - 1]
        if index <= self.commit:
            return False
        if not self._may_commit_by_counting(index):
            return False
        self.commit = index
        self._start_read_rounds()
        self._release_confirmed_reads()
        return True

    def _counts_toward_quorum(self, peer: int) -> bool:
        """Whether `peer`'s acknowledgements count: not while it catches up after losing its disk."""
        return self._progress[peer].voter

    def _may_commit_by_counting(self, index: int) -> bool:
        """Whether a quorum holding `index` commits it: only for an entry of this term. An older term's entry
        commits only under one of this term, or a later leader could overwrite it (Raft §5.4.2, Figure 8)."""
        return self.log.term_at(index) == self.term

    # -- ReadIndex -----------------------------------------------------------------------------------------

    def _start_read_rounds(self) -> None:
        """Give waiting reads a read index and a heartbeat round, once an entry of this term is committed."""
        if self.log.term_at(self.commit) != self.term:
            return
        waiting = [read for read in self._pending_reads if read.seq == 0]
        if not waiting:
            return
        self._heartbeat_seq += 1
        for read in waiting:
            read.index, read.seq = self.commit, self._heartbeat_seq
        if self.peers:
            self._broadcast_heartbeat()

    def _note_heartbeat_ack(self, pr: _Progress, seq: int) -> None:
        if seq > pr.heartbeat_acked:
            pr.heartbeat_acked = seq
            self._release_confirmed_reads()

    def _release_confirmed_reads(self) -> None:
        """Serve reads whose round a quorum acknowledged: we were still the leader when they arrived."""
        while self._pending_reads and self._pending_reads[0].seq:
            read = self._pending_reads[0]
            acks = 1 + sum(1 for p in self.peers if self._counts_toward_quorum(p) and self._progress[p].heartbeat_acked >= read.seq)
            if acks < self.quorum:
                return
            self._pending_reads.pop(0)
            self._read_states.append(ReadState(read.ctx, read.index))

    _handlers: dict[type, Callable[[RaftCore, Any], None]] = {
        RequestVote: _on_request_vote,
        RequestVoteResponse: _on_request_vote_response,
        AppendEntries: _on_append_entries,
        AppendEntriesResponse: _on_append_response,
        InstallSnapshot: _on_install_snapshot,
        InstallSnapshotResponse: _on_install_snapshot_response,
        TimeoutNow: _on_timeout_now,
    }
