"""A simulated Raft node: a RaftCore, its simulated disk and a session-wrapped state machine.

It plays the runtime's part of the contract in `pygmy.raft.core`: take a Ready, "fsync" it (a disk latency
later), then send its messages, apply its committed entries, serve its reads and advance. Inputs keep
arriving while a Ready is being synced, as they do in the asyncio runtime. A crash throws away the core,
the state machine and any unsynced Ready; a restart rebuilds them from the disk alone.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pygmy.raft.core import NotLeader, RaftCore, Ready
from pygmy.raft.messages import Entry, EntryKind, Message, Role, Snapshot
from pygmy.raft.sessions import SessionError, SessionStateMachine
from pygmy.raft.sim.disk import SimDisk
from pygmy.raft.sim.workload import Request

if TYPE_CHECKING:
    from pygmy.raft.sim.cluster import Simulation

# What a node answers a client attempt with.
OK, NOT_LEADER, RETRY = "ok", "not_leader", "retry"


class SimNode:
    def __init__(self, node_id: int, sim: Simulation, machine: Callable[[], Any]) -> None:
        self.id = node_id
        self.sim = sim
        self.machine = machine
        self.disk = SimDisk()
        self.incarnation = 0
        self.core: RaftCore | None = None
        self.tick_period = 10
        self.start()

    # -- life cycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot from the disk, as after a restart."""
        self.incarnation += 1
        sim = self.sim
        rng = random.Random(f"{sim.seed}:{self.id}:{self.incarnation}")
        self.core = RaftCore(
            self.id,
            sim.members,
            sim.raft_config,
            rng,
            hard_state=self.disk.hard_state,
            snapshot=self.disk.snapshot if self.disk.snapshot.index else None,
            entries=self.disk.entries,
            bugs=sim.bugs,
        )
        config = sim.config
        self.sm = SessionStateMachine(
            self.machine(), max_sessions=config.session_table, idle_entries=config.session_idle_entries
        )
        if self.disk.snapshot.index:
            self.sm.restore(self.disk.snapshot.data)
        self.applied = self.disk.snapshot.index
        self.in_flight: Ready | None = None
        self.proposals: dict[int, tuple[int, Request]] = {}  # index -> (term, request)
        self.reads: dict[int, Request] = {}  # ReadIndex ctx -> request
        self.confirmed_reads: list[tuple[int, int]] = []  # (read index, ctx) waiting for apply
        self._next_ctx = 0

    def crash(self) -> None:
        self.incarnation += 1
        self.core = None
        self.in_flight = None

    @property
    def alive(self) -> bool:
        return self.core is not None

    # -- inputs ------------------------------------------------------------------------------------------------

    def tick(self) -> None:
        assert self.core is not None
        self.core.tick()
        self.pump()

    def receive(self, message: Message) -> None:
        assert self.core is not None
        self.core.step(message)
        self.pump()

    def request(self, req: Request) -> None:
        assert self.core is not None
        try:
            if req.input[0] == "read":
                self._next_ctx += 1
                self.core.read_index(self._next_ctx)
                self.reads[self._next_ctx] = req
            else:
                index, term = self.core.propose(req.envelope())
                self.proposals[index] = (term, req)
        except NotLeader as exc:
            self.sim.reply(req, NOT_LEADER, exc.leader)
        self.pump()

    def transfer(self, target: int) -> None:
        assert self.core is not None
        self.core.transfer_leadership(target)
        self.pump()

    # -- the runtime loop --------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Hand the next Ready to the disk unless one is already being synced."""
        core = self.core
        assert core is not None
        if core.role is not Role.LEADER and self.proposals:
            self._drop_proposals(lambda index: True)  # they may still commit: the client retries, sessions dedupe
        if self.in_flight is None and core.has_ready():
            self.in_flight = core.ready()
            if self.in_flight.is_empty():
                raise AssertionError(f"node {self.id}: has_ready() but the Ready is empty")
            self.sim.schedule_sync(self)

    def persist(self) -> Ready:
        """The disk finished syncing the Ready in flight: it is durable now."""
        rd = self.in_flight
        assert rd is not None
        self.disk.save(rd)
        self.sim.checker.on_persist(self, rd)
        return rd

    def act(self, rd: Ready) -> None:
        """The rest of the runtime's pass over a durable Ready: send, apply, serve reads, advance."""
        core = self.core
        assert core is not None
        self.in_flight = None
        for message in rd.messages:
            self.sim.send(message)
        if rd.snapshot is not None:
            self._restore(rd.snapshot)
        for entry in rd.committed:
            self._apply(entry)
        self._serve_reads(rd)
        core.advance(rd)
        self._maybe_compact()

    def _restore(self, snapshot: Snapshot) -> None:
        self.sm.restore(snapshot.data)
        self.applied = snapshot.index
        self.sim.checker.on_snapshot(self, snapshot)
        self._drop_proposals(lambda index: index <= snapshot.index)

    def _apply(self, entry: Entry) -> None:
        if entry.index <= self.applied:
            return
        self.sim.checker.on_apply(self, entry)
        self.applied = entry.index
        try:
            result = self.sm.apply(entry.index, entry.data) if entry.kind == EntryKind.COMMAND else None
        except SessionError as refused:  # not applied: the client hears which refusal (e.g. expired)
            result = refused
        proposed = self.proposals.pop(entry.index, None)
        if proposed is not None:
            term, req = proposed
            if term == entry.term:
                self.sim.reply(req, OK, result)
            else:
                self.sim.reply(req, RETRY, None)

    def _serve_reads(self, rd: Ready) -> None:
        for ctx in rd.failed_reads:
            if (req := self.reads.pop(ctx, None)) is not None:
                self.sim.reply(req, RETRY, None)
        self.confirmed_reads += [(read.index, read.ctx) for read in rd.read_states]
        waiting = []
        for index, ctx in self.confirmed_reads:
            req = self.reads.get(ctx)
            if req is None:
                continue
            if index <= self.applied:
                del self.reads[ctx]
                self.sim.reply(req, OK, self.sm.query(b""))
            else:
                waiting.append((index, ctx))
        self.confirmed_reads = waiting

    def _drop_proposals(self, which: Callable[[int], bool]) -> None:
        for index in [i for i in self.proposals if which(i)]:
            self.sim.reply(self.proposals.pop(index)[1], RETRY, None)

    def _maybe_compact(self) -> None:
        core = self.core
        assert core is not None
        if self.applied - self.disk.snapshot.index < self.sim.snapshot_every:
            return
        term = core.term_at(self.applied)
        if term is None or self.applied > core.applied:
            return
        snapshot = Snapshot(self.applied, term, self.sm.snapshot())
        self.sim.checker.on_snapshot(self, snapshot)
        self.disk.compact(snapshot)
        core.compact(snapshot)

    def describe(self) -> str:
        if self.core is None:
            return f"n{self.id}:down"
        s = self.core.status()
        role = {"leader": "L", "follower": "F", "candidate": "C", "pre-candidate": "P"}[s.role.value]
        return f"n{self.id}:{role}t{s.term} c{s.commit} a{self.applied} l{s.last_index}"
