"""A simulated Raft node: a RaftCore driven by the runtime's own `ReadyDriver`, its simulated disk and state machine.

The node plays the runtime's part with the code that ships: `pygmy.raft.driver.ReadyDriver` decides what is
sent, applied and persisted in which order; only the I/O is simulated. A write that fsyncs completes a disk
latency later (inputs keep arriving meanwhile, as in the asyncio runtime), and the node may be crashed
between any two steps of the driver (`checkpoint`) or during the fsync. A crash throws away the core, the
state machine and any unsynced write; a restart rebuilds them from the disk alone.

While it applies, the node checks that nothing is applied beyond what its own disk holds: a state machine
that keeps its applied index durably (SQLite) would otherwise hold entries the log lost in a crash.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from pygmy.raft.core import NotLeader, RaftCore, Ready
from pygmy.raft.driver import STEPS, Crash, encode_batch, resume
from pygmy.raft.messages import Entry, Message, Role, Snapshot
from pygmy.raft.sessions import SessionStateMachine
from pygmy.raft.sim.bugs import driver_class, planted_core
from pygmy.raft.sim.disk import NodeDisk
from pygmy.raft.sim.invariants import Violation
from pygmy.raft.sim.workload import Request

if TYPE_CHECKING:
    from pygmy.raft.sim.cluster import Simulation

# What a node answers a client attempt with.
OK, NOT_LEADER, RETRY = "ok", "not_leader", "retry"

# Where a Ready may be cut short by a crash: between the driver's steps, or while its write is in the disk.
CRASH_POINTS = (*STEPS, "during fsync")


class SimNode:
    def __init__(self, node_id: int, sim: Simulation, machine: Callable[[], Any]) -> None:
        self.id = node_id
        self.sim = sim
        self.machine = machine
        self.incarnation = 0
        self.disk = NodeDisk(self._disk_rng())
        self.core: RaftCore | None = None
        self.tick_period = 10
        self.paused_until = 0  # a paused process handles nothing before this time
        self.start()

    # -- life cycle --------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Boot from the disk, as after a restart."""
        self.incarnation += 1
        sim = self.sim
        rng = random.Random(f"{sim.seed}:{self.id}:{self.incarnation}")
        persisted = self.disk.open_state()  # StorageCorrupt if the disk is damaged: the node stays down
        config = sim.config
        self.sm = SessionStateMachine(
            self.machine(), max_sessions=config.session_table, idle_entries=config.session_idle_entries
        )
        applied, applied_term, hard_state = resume(self.sm, persisted)
        self.applied = applied
        self.core = planted_core(
            self.id,
            sim.members,
            sim.raft_config,
            rng,
            hard_state=hard_state,
            snapshot=persisted.snapshot if persisted.snapshot.index else None,
            entries=persisted.entries,
            applied=applied,
            bugs=sim.bugs,
        )
        self.driver = driver_class(sim.bugs)(
            self.core,
            self.disk,
            self.sm,
            self._send,
            self,
            run_write=self._run_write,
            snapshot_every=sim.snapshot_every,
            applied=applied,
            applied_term=applied_term,
        )
        self.crash_at: str | None = None  # where the Ready being handled will be cut short, if at all
        self.proposals: dict[int, tuple[int, Request]] = {}  # index -> (term, request)
        self.reads: dict[int, Request] = {}  # ReadIndex ctx -> request
        self._retried: dict[bytes, int] = {}  # envelope of a pending session command -> its index
        self._retried_at: dict[int, bytes] = {}  # ... and back
        self._next_ctx = 0

    def crash(self) -> None:
        """The process dies and the power fails: only what was fsynced (and perhaps a torn tail) remains."""
        self.incarnation += 1
        self.core = None
        self.disk.power_loss()

    def wipe(self) -> None:
        """The disk is lost (the node is down): it rejoins empty, as a member catching up, marked so durably."""
        self.disk = NodeDisk(self._disk_rng(), catching_up=True)

    def _disk_rng(self) -> random.Random:
        return random.Random(f"{self.sim.seed}:disk:{self.id}:{self.incarnation}")

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
                envelope = req.envelope()
                index = self._retried.get(envelope) if req.seq or req.key else None
                # Still pending, in this term, and still this envelope: an index is reused after a leader change.
                pending = index is not None and index in self.proposals and self._retried_at.get(index) == envelope
                if pending and self.proposals[index][0] == self.core.term:
                    # As the runtime does: a retry of a session command still pending here waits for the
                    # same entry (the latest attempt gets the answer) instead of appending another.
                    self.proposals[index] = (self.proposals[index][0], req)
                else:
                    index, term = self.core.propose(encode_batch([envelope]))
                    self.proposals[index] = (term, req)
                    if (replaced := self._retried_at.pop(index, None)) is not None:
                        self._retried.pop(replaced, None)  # that index now holds another proposal
                    if req.seq or req.key:
                        self._retried[envelope], self._retried_at[index] = index, envelope
        except NotLeader as exc:
            self.sim.reply(req, NOT_LEADER, exc.leader)
        self.pump()

    def transfer(self, target: int) -> None:
        assert self.core is not None
        self.core.transfer_leadership(target)
        self.pump()

    # -- the runtime loop --------------------------------------------------------------------------------------

    def pump(self) -> None:
        """Let the driver handle what the core has; a crash at one of its steps takes the node down there."""
        core = self.core
        assert core is not None
        if core.role is not Role.LEADER and self.proposals:
            self._drop_proposals(lambda index: True)  # they may still commit: the client retries, sessions dedupe
        try:
            self.driver.pump()
        except Crash as crash:
            self.sim.bounce(self, str(crash))

    def _run_write(self, write: Callable[[], None], then: Callable[[], None]) -> None:
        self.sim.schedule_sync(self, write, then)

    def sync(self, write: Callable[[], None], then: Callable[[], None]) -> None:
        """The disk latency has passed: the write completes (unless the node dies during its fsync)."""
        if self.crash_at == "during fsync":
            self.disk.cut_write()  # the power fails a few file operations into the write
            try:
                write()
            except OSError:  # PowerLoss, or what storage's clean-up met after it: the process is gone anyway
                pass
            self.sim.bounce(self, "during fsync")
            return
        write()
        try:
            then()
        except Crash as crash:
            self.sim.bounce(self, str(crash))
            return
        self.pump()

    def _send(self, messages: list[Message]) -> None:
        for message in messages:
            self.sim.send(message)

    # -- what the driver tells the node (its DriverListener) ----------------------------------------------------

    def checkpoint(self, step: str, ready: Ready) -> None:
        if step == "ready":
            self.crash_at = self.sim.crash_point(ready)
        if step == self.crash_at:
            raise Crash(step)
        if step == "advanced":
            self.crash_at = None

    def on_persisted(self, ready: Ready) -> None:
        self.sim.checker.on_persist(self, ready)

    def on_applied(self, entry: Entry, results: list[bytes | Exception]) -> None:
        if entry.index > self.disk.last_index:
            raise Violation(
                f"node {self.id} applied entry {entry.index} while its disk holds entries up to {self.disk.last_index}: "
                "a durable state machine would be ahead of its log after a crash"
            )
        self.sim.checker.on_apply(self, entry)
        self.applied = entry.index
        proposed = self.proposals.pop(entry.index, None)
        if proposed is not None:
            term, req = proposed
            if term == entry.term:
                result = results[0] if results else None
                self.sim.reply(req, OK, result)
            else:
                self.sim.reply(req, RETRY, None)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        self.applied = max(self.applied, snapshot.index)
        self.sim.checker.on_snapshot(self, snapshot)
        self._drop_proposals(lambda index: index <= snapshot.index)

    def on_read_ready(self, ctx: int) -> None:
        if (req := self.reads.pop(ctx, None)) is not None:
            self.sim.reply(req, OK, self.sm.query(b""))

    def on_reads_failed(self, ctxs: list[int]) -> None:
        for ctx in ctxs:
            if (req := self.reads.pop(ctx, None)) is not None:
                self.sim.reply(req, RETRY, None)

    def _drop_proposals(self, which: Callable[[int], bool]) -> None:
        for index in [i for i in self.proposals if which(i)]:
            self.sim.reply(self.proposals.pop(index)[1], RETRY, None)

    def describe(self) -> str:
        if self.core is None:
            return f"n{self.id}:down"
        s = self.core.status()
        role = {"leader": "L", "follower": "F", "candidate": "C", "pre-candidate": "P"}[s.role.value]
        return f"n{self.id}:{role}t{s.term} c{s.commit} a{self.applied} l{s.last_index}"
