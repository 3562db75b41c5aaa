"""The Raft runtime: one replica of a group, wiring the I/O-free core to disk, clock and network.

`RaftGroup` owns a `RaftCore`, its `RaftStorage`, a `Transport` and a ticker on the asyncio loop, and
offers services three calls: `propose` (a command, answered with the state machine's result once it is
applied), `read` (a linearizable query via ReadIndex, without a log write) and `status`.

The order in which a Ready is persisted, sent and applied is `pygmy.raft.driver.ReadyDriver`'s, the same
code the simulator runs: the leader's AppendEntries leave before its own fsync, committed entries that are
durable here are applied while the write runs, votes and acknowledgements leave only after it. The write
that fsyncs runs in a disk thread, so the loop keeps receiving, answering and gathering proposals; the
next Ready waits for it.

Passes are scheduled with `call_soon`, so every proposal and message that arrives in the same loop
iteration (and everything that came in while the previous write ran) lands in one Ready and shares one
fsync: group commit without a timer. The commands proposed meanwhile also travel as one log entry
(`encode_batch`): one AppendEntries and one acknowledgement per follower for the whole group, instead
of one per command, which is what makes the leader cheap per command. Writing on the disk thread rather
than the loop gave ~1.3x the commits/s at 64 proposers when measured (`write_in_thread=False` to compare).

A non-leader does not forward: `propose` and `read` raise `NotLeader` naming the leader it knows, and the
caller (a service's HTTP layer) redirects. A proposal whose index ends up holding another term's entry, or
that is pending when this node stops being leader, fails with `ProposalDropped`: its outcome is unknown,
so the caller retries with the same client session (`session`, `seq`; see `pygmy.raft.sessions`), which
the group applies at most once; a session is opened through the log (`register_session`). Any failure
the replica cannot safely continue from (a failed write, an undeclared error while applying) stops it
(`GroupFailed`): fail-stop, never a silent divergence.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import time
from typing import Any
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from pygmy.raft.core import NotLeader, RaftConfig, RaftCore, Ready, Status
from pygmy.raft.driver import CommandRejected, ReadyDriver, encode_batch, resume
from pygmy.raft.identity import check_identity
from pygmy.raft.messages import Entry, HardState, Message, Role, Snapshot
from pygmy.raft.sessions import (
    SessionId,
    SessionStateMachine,
    StateMachine,
    decode_session,
    encode_command,
    encode_register,
)
from pygmy.raft.storage import PersistedState, RaftStorage
from pygmy.raft.transport import Transport

__all__ = [
    "CommandRejected",
    "GroupFailed",
    "GroupOptions",
    "NotLeader",
    "ProposalDropped",
    "ProposalTimeout",
    "RaftGroup",
    "ReadTimeout",
    "StateMachine",
]

log = logging.getLogger(__name__)


MAX_COMMANDS_PER_ENTRY = 1024


class ProposalDropped(Exception):
    """The proposal may or may not have been applied; retry it with the same session to apply it once."""


class ProposalTimeout(ProposalDropped, TimeoutError):
    """The proposal did not commit within `GroupOptions.propose_timeout`; it may still: retry with its session."""


class ReadTimeout(TimeoutError):
    """The read was not confirmed within `GroupOptions.read_timeout` (leadership unclear, no quorum): retry."""


class GroupFailed(Exception):
    """This replica hit an error it cannot safely continue from (e.g. a failed disk write) and stopped."""


@dataclass(frozen=True)
class GroupOptions:
    # 10 ms ticks; heartbeats every 30 ms; elections after 150-300 ms of silence (failover well under 0.5 s).
    tick_seconds: float = 0.01
    raft: RaftConfig = field(default_factory=lambda: RaftConfig(election_ticks=15, heartbeat_ticks=3))
    snapshot_every: int = 10_000  # applied entries between snapshots (and log compactions)
    sync: bool = True  # fsync; False only to measure what durability costs
    write_in_thread: bool = True  # fsync in a thread (the loop keeps working) or on the loop thread
    seed: int | None = None
    # A leader that cannot reach a quorum (check-quorum off, or before it notices) would keep callers waiting
    # forever: past these deadlines a read raises ReadTimeout and a proposal ProposalTimeout. None: no deadline.
    read_timeout: float | None = 2.0
    propose_timeout: float | None = 2.0
    # TLS for the Raft streams (pygmy.common.tls.TlsContexts); every frame is authenticated either way.
    tls: Any = None
    # Where this member accepts its peers' connections, if not at its own entry of `peers` (a container's 0.0.0.0).
    listen_host: str | None = None


class RaftGroup:
    """One member of a Raft group. `peers` maps every member's id (this one's too) to its (host, port)."""

    def __init__(
        self,
        node_id: int,
        peers: dict[int, tuple[str, int]],
        data_dir: str | Path,
        secret: str | bytes,
        state_machine: StateMachine,
        options: GroupOptions = GroupOptions(),
        *,
        join: bool = False,
        cluster_id: str = "pygmy",
    ) -> None:
        """`join`: a member that finds its data directory empty rejoins an existing cluster (its disk was lost)
        instead of bootstrapping a new one. `cluster_id` and `node_id` are recorded at the first start and
        checked at every later one, so a data directory is never run as another member or another cluster."""
        self.node_id = node_id
        self.options = options
        # Every command travels in a session envelope, so that a retried one applies once; the
        # service's state machine sees only its own payloads, and the session table rides in snapshots.
        self.state_machine = state_machine
        self._replicated = SessionStateMachine(state_machine)
        self.storage = RaftStorage(data_dir, sync=options.sync)
        check_identity(self.storage, cluster_id, node_id)
        persisted = self.storage.state()
        if join and _is_empty(persisted):
            # Started empty in an existing cluster (its disk was lost): it votes only once it has caught up.
            log.warning("raft node %s starts with an empty log and rejoins, catching up before it votes", node_id)
            self.storage.save(HardState(catching_up=True), [])
            persisted = self.storage.state()
        applied, applied_term, hard_state = resume(self._replicated, persisted)
        self.core = RaftCore(
            node_id,
            sorted(peers),
            options.raft,
            random.Random(options.seed),
            hard_state=hard_state,
            snapshot=persisted.snapshot if persisted.snapshot.index else None,
            entries=persisted.entries,
            applied=applied,
        )
        host, port = peers[node_id]
        self.transport = Transport(node_id, (options.listen_host or host, port), peers, secret, self._deliver,
                                   tls=options.tls)
        # Writes that fsync run in this thread, so the loop keeps answering and receiving meanwhile.
        self._disk = ThreadPoolExecutor(1, thread_name_prefix=f"raft-disk-{node_id}") if options.write_in_thread else None
        self.driver = ReadyDriver(
            self.core,
            self.storage,
            self._replicated,
            self._send,
            self,
            run_write=self._in_disk_thread if self._disk is not None else None,
            snapshot_every=options.snapshot_every,
            applied=applied,
            applied_term=applied_term,
        )
        self.on_durable_write: Callable[[float], None] | None = None  # seconds of each fsynced save
        self._unproposed: list[tuple[bytes, asyncio.Future[bytes]]] = []  # until the next pass
        self._retried: dict[bytes, asyncio.Future[bytes]] = {}  # pending session commands, by envelope
        self._proposals: dict[int, tuple[int, list[asyncio.Future[bytes]]]] = {}  # index -> (term, callers)
        self._unread: list[tuple[bytes, asyncio.Future[bytes]]] = []  # until the next pass
        self._reads: dict[int, list[tuple[bytes, asyncio.Future[bytes]]]] = {}  # ctx -> (query, caller)s
        self._read_ids = itertools.count(1)
        self._scheduled = False
        self._ticker: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.failure: Exception | None = None  # set when this replica stopped itself (fail-stop)
        self._heard: dict[int, float] = {}  # peer id -> when a message from it last arrived (monotonic)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        await self.transport.start()
        self._ticker = self._loop.call_later(self.options.tick_seconds, self._tick)
        self._schedule()

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
        await self.transport.close()
        self._fail_pending(ProposalDropped("the node is shutting down"), NotLeader(None))
        if self._disk is not None:
            self._disk.shutdown(wait=True)  # let a write in flight finish before closing the file
        self.storage.close()

    # -- the API services use ------------------------------------------------------------------

    async def propose(self, command: bytes, *, session: SessionId = 0, seq: int = 0, ack: int = 0) -> bytes:
        """Replicate `command` and return what the state machine answered when applying it.

        Raises NotLeader (with the leader's id, if known) on a follower, ProposalDropped if the outcome is
        unknown (ProposalTimeout, a subclass, after `GroupOptions.propose_timeout`).

        At most once: open a `session` with `register_session`, number its commands `seq` 1, 2, ... and,
        after ProposalDropped or a timeout, propose a command again with the same pair (at the new
        leader): it is applied at most once and the retry gets the first result. `ack` tells the group
        that the client has the results of every seq up to it, so they may be forgotten. The session
        layer's refusals are raised as `pygmy.raft.sessions.SessionError`s (`CommandRejected`s):
        `SessionExpired` (register again; the command's outcome is unknown), `DuplicateCommand`,
        `TooManyPending`. With seq 0, a command is applied every time it is committed.
        """
        return await self.submit(command, session=session, seq=seq, ack=ack)

    def submit(self, command: bytes, *, session: SessionId = 0, seq: int = 0, ack: int = 0) -> asyncio.Future[bytes]:
        """`propose` without the coroutine: the future of the result (servers answer from its callback)."""
        self._check_leader()
        envelope = encode_command(session, seq, command, ack)
        if seq and (pending := self._retried.get(envelope)) is not None and not pending.done():
            # A retry of a session command still pending here: wait for the same entry rather than append
            # another, or clients that retry faster than entries commit could grow the log without end.
            return _follow(pending, self._running_loop().create_future())
        future: asyncio.Future[bytes] = self._running_loop().create_future()
        if seq:
            self._retried[envelope] = future
            future.add_done_callback(lambda _: self._retried.pop(envelope, None))
        self._unproposed.append((envelope, future))
        self._expire_after(future, self.options.propose_timeout, self._abandon_proposal)
        self._schedule()
        return future

    async def register_session(self, key: bytes = b"") -> SessionId:
        """Open a client session through the log; its id is the index of the entry that registered it.

        Raises as `propose` does. Retry after an unknown outcome with the same `key` (chosen by the
        client for this incarnation, e.g. 16 random bytes) to get the same session rather than a second.
        """
        return decode_session(await self.submit_registration(key))

    def submit_registration(self, key: bytes = b"") -> asyncio.Future[bytes]:
        """`register_session` without the coroutine: the future of the encoded id (`decode_session`)."""
        self._check_leader()
        future: asyncio.Future[bytes] = self._running_loop().create_future()
        # Alone in its entry, not gathered with other commands: the entry's index is the session's id.
        index, term = self.core.propose(encode_batch([encode_register(key)]))
        self._proposals[index] = (term, [future])
        self._expire_after(future, self.options.propose_timeout, self._abandon_proposal)
        self._schedule()
        return future

    async def read(self, query: bytes) -> bytes:
        """Answer `query` from state that reflects every write committed before the call (ReadIndex).

        Raises NotLeader on a follower, ReadTimeout after `GroupOptions.read_timeout`.
        """
        return await self.submit_read(query)

    def submit_read(self, query: bytes) -> asyncio.Future[bytes]:
        """`read` without the coroutine. Reads gathered in one loop iteration share one ReadIndex round."""
        self._check_leader()
        future: asyncio.Future[bytes] = self._running_loop().create_future()
        self._unread.append((query, future))
        self._expire_after(future, self.options.read_timeout, self._abandon_read)
        self._schedule()
        return future

    def last_contact(self) -> float | None:
        """Seconds since this replica last heard from its leader: 0 on the leader, None if no leader is known."""
        status = self.core.status()
        if status.leader is None:
            return None
        if status.leader == self.node_id:
            return 0.0
        heard = self._heard.get(status.leader)
        return None if heard is None else time.monotonic() - heard

    def status(self) -> Status:
        return self.core.status()

    async def transfer_leadership(self, target: int, timeout: float = 2.0) -> None:
        """Hand leadership to `target` and wait until this node hears it lead (TimeoutError otherwise)."""
        self.core.transfer_leadership(target)
        self._schedule()
        loop = self._running_loop()
        deadline = loop.time() + timeout
        while self.core.status().leader != target:
            if loop.time() > deadline:
                raise TimeoutError(f"node {target} did not take over within {timeout} s")
            await asyncio.sleep(self.options.tick_seconds)

    # -- deadlines ------------------------------------------------------------------------------

    def _expire_after(
        self, future: asyncio.Future[bytes], timeout: float | None, abandon: Callable[[asyncio.Future[bytes]], None]
    ) -> None:
        """Fail `future` by `abandon` if it is still pending after `timeout` seconds."""
        if timeout is None:
            return
        timer = self._running_loop().call_later(timeout, lambda: None if future.done() else abandon(future))
        future.add_done_callback(lambda _: timer.cancel())

    def _abandon_read(self, future: asyncio.Future[bytes]) -> None:
        """Fail a read that waited too long, and forget it here and in the core so that nothing piles up."""
        self._unread = [(q, f) for q, f in self._unread if f is not future]
        for ctx, reads in list(self._reads.items()):
            self._reads[ctx] = [(q, f) for q, f in reads if f is not future]
            if all(f.done() for _, f in self._reads[ctx]):  # nobody waits for this round any more
                del self._reads[ctx]
                self.driver.forget_read(ctx)
        future.set_exception(ReadTimeout(f"read not confirmed within {self.options.read_timeout} s"))

    def _abandon_proposal(self, future: asyncio.Future[bytes]) -> None:
        """Fail a proposal that waited too long; its entry stays in the log and may still commit."""
        self._unproposed = [(c, f) for c, f in self._unproposed if f is not future]
        # The callers of one entry stay in place (their results are matched by position) until all are done.
        for index, (_, futures) in list(self._proposals.items()):
            if future in futures and all(f.done() or f is future for f in futures):
                del self._proposals[index]
        timeout = self.options.propose_timeout
        future.set_exception(ProposalTimeout(f"not committed within {timeout} s; retry with the same session"))

    # -- driving the core ----------------------------------------------------------------------

    def _check_leader(self) -> None:
        if self.failure is not None:
            raise GroupFailed(f"node {self.node_id} stopped: {self.failure!r}")
        status = self.core.status()
        if status.role != Role.LEADER:
            raise NotLeader(status.leader)

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("RaftGroup.start() has not been awaited")
        return self._loop

    def _deliver(self, messages: list[Message]) -> None:
        if self.failure is not None:
            return
        now = time.monotonic()
        for message in messages:
            self._heard[message.src] = now
            self.core.step(message)
        self._schedule()

    def _tick(self) -> None:
        # One core tick per timer callback, not per elapsed interval: after a stall of the loop the
        # heartbeats waiting in the socket are read before the node concludes the leader is gone.
        self._ticker = self._running_loop().call_later(self.options.tick_seconds, self._tick)
        self.core.tick()
        self._schedule()

    def _schedule(self) -> None:
        if not self._scheduled:
            self._scheduled = True
            self._running_loop().call_soon(self._process)

    def _process(self) -> None:
        self._scheduled = False
        if self.failure is not None or self.driver.writing:
            return  # after the write in flight, the driver's next pass runs from _written
        try:
            self._propose_gathered()
            self.driver.pump()
            self._after_pump()
        except Exception as exc:
            self._stop(exc)

    def _in_disk_thread(self, write: Callable[[], None], then: Callable[[], None]) -> None:
        """The driver's write runner: `write` in the disk thread, then `then` and the next pass on the loop."""
        observe = self.on_durable_write

        def timed_write() -> None:
            start = time.perf_counter()
            write()
            if observe is not None:  # how long the fsynced save took (a metric of the node, if it keeps one)
                observe(time.perf_counter() - start)

        future = self._running_loop().run_in_executor(self._disk, timed_write)
        future.add_done_callback(lambda done: self._written(done, then))

    def _written(self, write: asyncio.Future[None], then: Callable[[], None]) -> None:
        if self.failure is not None:
            return
        try:
            write.result()
            then()
        except Exception as exc:
            self._stop(exc)
            return
        self._process()

    def _send(self, messages: list[Message]) -> None:
        for message in messages:
            self.transport.send(message)
        self.transport.flush()

    def _stop(self, exc: Exception) -> None:
        # Fail-stop: after a failed write (disk full, I/O error) or an undeclared error while applying, the
        # core, the disk and the state machine may disagree, and a replica that carries on could break
        # safety or diverge. Stop taking part; a restart recovers from what is durable.
        log.critical("raft node %s stopped: %r", self.node_id, exc)
        self.failure = exc
        if self._ticker is not None:
            self._ticker.cancel()
        stopped = f"node {self.node_id} stopped ({exc!r}); the outcome of pending proposals is unknown"
        self._fail_pending(GroupFailed(stopped), GroupFailed(stopped))

    def _propose_gathered(self) -> None:
        """Hand the core the commands and reads gathered since the last pass, as few entries and rounds."""
        while self._unproposed:
            batch, self._unproposed = self._unproposed[:MAX_COMMANDS_PER_ENTRY], self._unproposed[MAX_COMMANDS_PER_ENTRY:]
            try:
                index, term = self.core.propose(encode_batch([command for command, _ in batch]))
            except NotLeader as exc:
                _fail([future for _, future in batch], exc)
                continue
            self._proposals[index] = (term, [future for _, future in batch])
        if self._unread:
            ctx = next(self._read_ids)
            reads, self._unread = self._unread, []
            try:
                self.core.read_index(ctx)
            except NotLeader as exc:
                _fail([future for _, future in reads], exc)
                return
            self._reads[ctx] = reads

    # -- what the driver tells this replica (its DriverListener) ----------------------------------

    def checkpoint(self, step: str, ready: Ready) -> None:
        pass  # only the simulator crashes a node between steps

    def on_persisted(self, ready: Ready) -> None:
        pass

    def on_applied(self, entry: Entry, results: list[bytes | Exception]) -> None:
        pending = self._proposals.pop(entry.index, None)
        if pending is None:
            return
        proposed_term, futures = pending
        if proposed_term != entry.term:
            _fail(futures, ProposalDropped(f"entry {entry.index} of term {proposed_term} lost to term {entry.term}"))
            return
        for future, result in zip(futures, results):
            if future.done():
                continue
            if isinstance(result, Exception):
                future.set_exception(result)
            else:
                future.set_result(result)

    def on_snapshot(self, snapshot: Snapshot) -> None:
        for index in [i for i in self._proposals if i <= snapshot.index]:
            _fail(self._proposals.pop(index)[1], ProposalDropped(f"entry {index} was replaced by a snapshot"))

    def on_read_ready(self, ctx: int) -> None:
        for query, future in self._reads.pop(ctx, []):
            if future.done():
                continue
            try:
                future.set_result(self.state_machine.query(query))
            except Exception as exc:  # a bad query is the caller's problem, not the replica's
                future.set_exception(exc)

    def on_reads_failed(self, ctxs: list[int]) -> None:
        leader = self.core.status().leader
        for ctx in ctxs:
            _fail([future for _, future in self._reads.pop(ctx, [])], NotLeader(leader))

    def _after_pump(self) -> None:
        if self._proposals and self.core.status().role != Role.LEADER:
            # Entries this node proposed may still commit under the new leader, or not: unknown.
            self._fail_pending(ProposalDropped("leadership lost before the entry committed"), None)

    def _fail_pending(self, proposal_error: Exception, read_error: Exception | None) -> None:
        for _, futures in self._proposals.values():
            _fail(futures, proposal_error)
        self._proposals.clear()
        _fail([future for _, future in self._unproposed], proposal_error)
        self._unproposed.clear()
        if read_error is not None:
            for reads in self._reads.values():
                _fail([future for _, future in reads], read_error)
            _fail([future for _, future in self._unread], read_error)
            self._reads.clear()
            self._unread.clear()


def _is_empty(persisted: PersistedState) -> bool:
    return persisted.hard_state == HardState() and not persisted.entries and not persisted.snapshot.index


def _follow(source: asyncio.Future[bytes], copy: asyncio.Future[bytes]) -> asyncio.Future[bytes]:
    """`copy` gets `source`'s outcome; cancelling `copy` (its caller gave up) leaves `source` alone."""

    def settle(done: asyncio.Future[bytes]) -> None:
        if copy.done():
            return
        if done.cancelled():
            copy.cancel()
        elif (error := done.exception()) is not None:
            copy.set_exception(error)
        else:
            copy.set_result(done.result())

    source.add_done_callback(settle)
    return copy


def _fail(futures: list[asyncio.Future[bytes]], error: Exception) -> None:
    for future in futures:
        if not future.done():
            future.set_exception(error)
