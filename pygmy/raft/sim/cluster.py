"""The deterministic simulation: a whole Raft cluster and its clients in one process, on a simulated clock.

Everything random — timeouts, message fates, faults, client choices — comes from generators seeded with
the run's seed, and events are ordered by (time, insertion order), so a seed replays exactly. A run has
three phases:

1. faults (`SimConfig.ticks` ticks): a nemesis crashes and restarts nodes (also around their fsyncs),
   partitions the network (clean, asymmetric, isolating the leader) and heals it, while the network drops,
   delays, reorders and duplicates messages; clients keep issuing operations;
2. liveness: faults stop, every node restarts, and a new write must complete within `liveness_ticks`;
3. drain: clients finish or give up, and the history must be linearizable.

The safety checks in `invariants` run after every event.
"""

from __future__ import annotations

import heapq
import itertools
import random
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pygmy.checker.linearizability import CheckResult, check
from pygmy.raft.core import RaftConfig, Ready
from pygmy.raft.messages import Message, Role
from pygmy.raft.sessions import DuplicateCommand, SessionError, SessionExpired, decode_session
from pygmy.raft.sim.invariants import SafetyChecker, Violation
from pygmy.raft.sim.network import LinkFaults, Network
from pygmy.raft.sim.node import CRASH_POINTS, NOT_LEADER, OK, SimNode
from pygmy.raft.storage import StorageCorrupt
from pygmy.raft.sim.workload import WORKLOADS, Request, SimClient, decode_output

TICK = 10  # simulated time units per tick; message and disk latencies are a few units


@dataclass(frozen=True)
class SimConfig:
    nodes: int = 5
    ticks: int = 1000  # length of the fault phase
    clients: int = 3
    workload: str | None = None  # "register" or "counter"; None: chosen by the seed
    bugs: frozenset[str] = frozenset()
    liveness_ticks: int = 150  # once faults stop, a new write must complete within this many ticks
    op_ticks: int = 60  # a client gives up on a read after this long (writes: see SimClient.retry_writes_until)
    # Steps of the linearizability search before it gives up (about 1.2M steps/s here): a budget in steps, not
    # seconds, so that a seed's verdict never depends on how loaded the machine is.
    check_steps: int = 20_000_000
    sessions: bool = True  # False: writes carry no session, so retried ones may apply twice (what sessions are for)
    session_table: int = 10_000  # sessions a replica keeps; registering beyond expires the least recently active
    session_idle_entries: int | None = None  # also expire sessions idle for more than this many log entries
    client_restarts: float = 0.0  # chance, per operation, that the client dies during it and comes back sessionless


@dataclass
class SimResult:
    seed: int
    ok: bool
    failure: str | None = None
    kind: str | None = None  # "safety", "liveness", "linearizability", "linearizability-undecided", "exception"
    time: int = 0
    events: int = 0
    terms: int = 0
    committed: int = 0
    operations: int = 0
    unknown: int = 0
    workload: str = ""
    linearizable: bool | None = None
    recovery_ticks: float | None = None  # from the end of faults until the liveness write completed
    expired: int = 0  # writes answered "session expired" (unknown outcome; the client registered again)
    client_restarts: int = 0


@dataclass(frozen=True)
class _Faults:
    """Per-seed fault intensity, drawn from the seed so different seeds stress different things."""

    link: LinkFaults
    nemesis_ticks: int  # mean gap between nemesis actions
    crash_at_sync: float  # probability a node dies around an fsync (of entries, term or vote)
    slow_sync: float  # probability an fsync takes several message delays instead of a few units
    wipe_weight: int  # how often the nemesis wipes a member's disk, relative to its other actions
    clock_skew: int  # how far a node's tick period may stray from TICK
    raft: RaftConfig
    snapshot_every: int


def _draw_faults(rng: random.Random) -> _Faults:
    link = LinkFaults(
        drop=rng.choice([0.0, 0.01, 0.05, 0.15]),
        duplicate=rng.choice([0.0, 0.02, 0.1]),
        min_delay=1,
        max_delay=rng.choice([3, 10, 25]),
        slow=rng.choice([0.0, 0.01, 0.05]),
    )
    raft = RaftConfig(
        election_ticks=10,
        heartbeat_ticks=rng.choice([1, 2, 3]),
        pre_vote=rng.random() < 0.5,
        check_quorum=rng.random() < 0.5,
        max_entries_per_message=rng.choice([1, 1, 2, 4, 256]),
        max_inflight_messages=rng.choice([1, 4, 64]),
        # Drawn from a fork of `rng`, so the draws above and below (and so the regression seeds) stay as they were.
        **_draw_snapshot_config(random.Random(f"{rng.getstate()}:snapshots")),
    )
    return _Faults(
        link=link,
        nemesis_ticks=rng.choice([1, 3, 8, 20]),
        crash_at_sync=rng.choice([0.0, 0.05, 0.2, 0.5]),
        slow_sync=rng.choice([0.0, 0.05, 0.3]),
        wipe_weight=rng.choice([0, 1, 3]),
        clock_skew=rng.choice([1, 1, 3]),
        raft=raft,
        snapshot_every=rng.choice([4, 16, 10_000]),
    )


def _draw_snapshot_config(rng: random.Random) -> dict[str, int]:
    """Small chunks make a snapshot travel as many InstallSnapshot messages; small windows make followers need one."""
    return {
        "snapshot_chunk_bytes": rng.choice([3, 16, 1 << 20]),  # sim snapshots are tens of bytes
        "catch_up_entries": rng.choice([0, 2, 8, 1000]),
    }


class Simulation:
    def __init__(self, seed: int, config: SimConfig, trace: Callable[[str], None] | None = None) -> None:
        self.seed = seed
        self.config = config
        self.trace = trace
        self.fault_rng = random.Random(f"{seed}:faults")
        self.client_rng = random.Random(f"{seed}:clients")
        self.faults = _draw_faults(self.fault_rng)
        self.raft_config = self.faults.raft
        self.snapshot_every = self.faults.snapshot_every
        self.bugs = config.bugs
        self.members = list(range(1, config.nodes + 1))
        self.network = Network(random.Random(f"{seed}:network"), self.faults.link)
        self.checker = SafetyChecker()
        name = config.workload or self.fault_rng.choice(sorted(WORKLOADS))
        self.workload = WORKLOADS[name]
        self.now = 0
        self.events = 0
        self._queue: list[tuple[int, int, Callable[..., None], tuple[Any, ...]]] = []
        self._order = itertools.count()
        self.fault_end = config.ticks * TICK
        self.client_end = self.fault_end + config.liveness_ticks * TICK
        self.faulty = True
        self.nodes = {i: SimNode(i, self, self.workload.machine) for i in self.members}
        self.clients = [
            SimClient(
                c,
                random.Random(f"{seed}:client:{c}"),
                self.workload,
                config.op_ticks * TICK,
                sessions=config.sessions,
                retry_writes_until=self.client_end,  # the calm liveness phase settles every pending write
            )
            for c in range(1, config.clients + 1)
        ]
        # The liveness probe: its write after the faults measures recovery, so where an idle session survives the
        # faults (no idle expiry, a table with room to spare) it opens its session at the start, as a long-lived
        # client would have one; elsewhere (its idle session would be the first to expire) after the faults.
        probe_rng = random.Random(f"{seed}:probe")
        self.probe = SimClient(
            0, probe_rng, self.workload, config.liveness_ticks * TICK, sessions=config.sessions, retry_writes_until=self.client_end
        )
        self._probe_write_waits = False
        self._unique = itertools.count(1)
        self.restart_rng = random.Random(f"{seed}:client-restarts")
        self.expired = 0
        self.client_restarts = 0

    # -- the event loop --------------------------------------------------------------------------------------

    def at(self, delay: int, action: Callable[..., None], *args: Any) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._order), action, args))

    def run(self) -> None:
        for node in self.nodes.values():
            # Clocks drift apart; in some seeds by a lot (a node whose ticks come 30% faster or slower).
            node.tick_period = TICK + self.fault_rng.choice([-1, 0, 0, 1]) * self.faults.clock_skew
            self.at(self.fault_rng.randrange(TICK), self._tick, node, node.incarnation)
        for client in self.clients:
            self.at(self.client_rng.randrange(5 * TICK), self._next_operation, client)
        spare_room = self.config.session_table >= 2 * (self.config.clients + 1)
        if self.config.sessions and self.config.session_idle_entries is None and spare_room:
            self.probe.begin_registration(self.now)
            self.at(self.client_rng.randrange(5 * TICK), self._attempt, self.probe, self.probe.op_no)
        self.at(self.fault_rng.randint(1, 2 * self.faults.nemesis_ticks) * TICK, self._nemesis)
        self.at(self.fault_end, self._end_faults)
        nodes = list(self.nodes.values())
        budget = 200 * len(nodes) * (self.config.ticks + self.config.liveness_ticks + self.config.op_ticks)
        while self._queue and not self._finished():
            self.now, _, action, args = heapq.heappop(self._queue)
            self.events += 1
            if self.events > budget:
                raise Violation(f"runaway: more than {budget} events (a node that never goes quiet?)")
            action(*args)
            self.checker.after_event(nodes)

    def _finished(self) -> bool:
        if self.now < self.client_end:
            return False
        return all(c.current is None for c in self.clients) and self.probe.current is None and not self._probe_write_waits

    def log(self, text: str) -> None:
        if self.trace is not None:
            states = " ".join(node.describe() for node in self.nodes.values())
            self.trace(f"{self.now:>7} {text:<60} | {states}")

    # -- nodes and network ----------------------------------------------------------------------------------

    def _paused(self, node: SimNode, action: Callable[..., None], *args: Any) -> bool:
        """A paused process does nothing until it wakes: `action` waits for then (in order); True if it must."""
        if node.paused_until <= self.now:
            return False
        self.at(node.paused_until - self.now, action, *args)
        return True

    def _tick(self, node: SimNode, incarnation: int) -> None:
        if node.incarnation != incarnation:
            return  # the node crashed; its restart started a new tick chain
        if self._paused(node, self._tick, node, incarnation):
            return  # its timer fires once when it wakes, however long it slept
        node.tick()
        self.at(node.tick_period, self._tick, node, incarnation)

    def send(self, message: Message) -> None:
        for delay in self.network.delivery_delays(message.src, message.dst):
            self.at(delay, self._deliver, message)

    def _deliver(self, message: Message) -> None:
        node = self.nodes[message.dst]
        if node.alive and not self._paused(node, self._deliver, message):
            if self.trace:
                self.log(f"deliver {_brief(message)}")
            node.receive(message)

    def schedule_sync(self, node: SimNode, write: Callable[[], None], then: Callable[[], None]) -> None:
        rng = self.fault_rng
        # A slow disk widens the window in which a write is in flight: what the driver's ordering must survive.
        latency = rng.randint(5, 4 * TICK) if self.faulty and rng.random() < self.faults.slow_sync else rng.randint(1, 3)
        self.at(latency, self._sync, node, node.incarnation, write, then)

    def _sync(self, node: SimNode, incarnation: int, write: Callable[[], None], then: Callable[[], None]) -> None:
        if node.incarnation != incarnation:
            return  # crashed before the fsync completed: that write never reached the disk
        if self._paused(node, self._sync, node, incarnation, write, then):
            return
        node.sync(write, then)

    def crash_point(self, rd: Ready) -> str | None:
        """Where (if at all) a node dies while handling `rd`: between two driver steps, or during its fsync."""
        if not self.faulty:
            return None
        # Mostly where something becomes durable (entries, term, vote); sometimes anywhere.
        chance = self.faults.crash_at_sync * (1.0 if rd.must_sync else 0.1)
        if self.fault_rng.random() >= chance:
            return None
        return self.fault_rng.choice(CRASH_POINTS)

    def bounce(self, node: SimNode, point: str) -> None:
        self.log(f"n{node.id} dies at {point}")
        # Either a process bounce (back within a few ticks) or a longer outage.
        rng = self.fault_rng
        self._crash(node, rng.choice([rng.randint(1, 3 * TICK), rng.randint(10 * TICK, 40 * TICK)]))

    def _crash(self, node: SimNode, restart_after: int) -> None:
        if not node.alive:
            return
        node.crash()
        self.log(f"crash n{node.id} (restart in {restart_after} units)")
        self.at(restart_after, self._restart, node)

    def _restart(self, node: SimNode) -> None:
        if node.alive:
            return
        try:
            node.start()
        except StorageCorrupt as exc:
            # Detected, as it must be. The operator's repair: wipe the member and let it rejoin, catching up
            # (one member at a time: wait while another is still catching up).
            self.log(f"n{node.id} refuses to start: {exc}")
            if self._someone_catching_up(besides=node):
                self.at(10 * TICK, self._restart, node)
                return
            node.wipe()
            node.start()
        self.log(f"restart n{node.id}")
        self.at(self.fault_rng.randrange(node.tick_period), self._tick, node, node.incarnation)
        node.pump()

    # -- faults ---------------------------------------------------------------------------------------------

    def _leader(self) -> SimNode | None:
        leaders = [n for n in self.nodes.values() if n.core is not None and n.core.role is Role.LEADER]
        return max(leaders, key=lambda n: n.core.term) if leaders else None  # type: ignore[union-attr]

    def _nemesis(self) -> None:
        if not self.faulty:
            return
        rng = self.fault_rng
        action = rng.choices(
            ["crash", "crash_leader", "partition", "isolate_leader", "bridge", "one_way", "transfer", "heal", "nothing",
             "wipe", "flip", "pause"],
            weights=[2, 2, 2, 2, 2, 1, 2, 3, 1, self.faults.wipe_weight, self.faults.wipe_weight, 2],
        )[0]
        alive = [n for n in self.nodes.values() if n.alive]
        can_crash = len(alive) > len(self.members) // 2  # the nemesis leaves a quorum up (sync crashes may not)
        restart = TICK * rng.choice([rng.randint(1, 5), rng.randint(10, 60)])
        if action == "crash" and can_crash:
            self._crash(rng.choice(alive), restart)
        elif action == "crash_leader" and can_crash and (leader := self._leader()):
            self._crash(leader, restart)
        elif action == "partition":
            shuffled = rng.sample(self.members, len(self.members))
            split = rng.randint(1, len(shuffled) - 1)
            self.network.heal()
            self.network.partition(set(shuffled[:split]), set(shuffled[split:]))
            self.log(f"partition {sorted(shuffled[:split])} | {sorted(shuffled[split:])}")
        elif action == "isolate_leader" and (leader := self._leader()):
            self.network.heal()
            self.network.partition({leader.id}, set(self.members) - {leader.id})
            self.log(f"isolate leader n{leader.id}")
        elif action == "bridge":
            # Two halves that cannot hear each other, and one node both can hear (Jepsen's "bridge").
            shuffled = rng.sample(self.members, len(self.members))
            bridge, rest = shuffled[0], shuffled[1:]
            half = len(rest) // 2
            self.network.heal()
            self.network.partition(set(rest[:half]), set(rest[half:]))
            self.log(f"bridge n{bridge} between {sorted(rest[:half])} and {sorted(rest[half:])}")
        elif action == "one_way":
            links = [(a, b) for a in self.members for b in self.members if a != b]
            cut = rng.sample(links, rng.randint(1, len(self.members)))
            self.network.cut |= set(cut)
            self.log(f"cut links {sorted(cut)}")
        elif action == "transfer" and (leader := self._leader()):
            target = rng.choice([m for m in self.members if m != leader.id])
            self.log(f"n{leader.id} transfers leadership to n{target}")
            leader.transfer(target)
        elif action == "flip" and not self._someone_catching_up() and (down := [n for n in self.nodes.values() if not n.alive]):
            victim = rng.choice(down)
            if victim.disk.flip_bit():
                self.log(f"flip a bit in a record in the middle of n{victim.id}'s WAL")
        elif action == "wipe" and can_crash and not self._someone_catching_up():
            # One member at a time loses its disk (and rejoins catching up); a second before the first has
            # caught up would be two failures, more than Raft tolerates with three members.
            victim = rng.choice(alive)
            self.log(f"wipe n{victim.id}'s disk")
            victim.crash()
            victim.wipe()
            self.at(restart, self._restart, victim)
        elif action == "pause" and alive and (leader := self._leader() if rng.random() < 0.7 else rng.choice(alive)):
            # A process that stops (GC, SIGSTOP, a VM migration) and wakes up believing what it believed.
            leader.paused_until = self.now + TICK * rng.randint(5, 60)
            self.log(f"pause n{leader.id} until {leader.paused_until}")
        elif action == "heal":
            self.network.heal()
            self.log("heal network")
        self.at(rng.randint(1, 2 * self.faults.nemesis_ticks) * TICK, self._nemesis)

    def _someone_catching_up(self, besides: SimNode | None = None) -> bool:
        """Whether a member other than `besides` lost its disk (damaged, or catching up after a wipe)."""
        return any(n.disk.hard_state.catching_up or n.disk.damaged for n in self.nodes.values() if n is not besides)

    def _end_faults(self) -> None:
        self.faulty = False
        for node in self.nodes.values():
            node.paused_until = min(node.paused_until, self.now)
        self.network.heal()
        self.network.faults = LinkFaults(max_delay=self.faults.link.max_delay)
        for node in self.nodes.values():
            if not node.alive:
                self._restart(node)
        self.log("faults stop: network healed, every node up")
        allowed = self.config.liveness_ticks + self._backlog_ticks()
        self.client_end = self.fault_end + allowed * TICK
        for client in [*self.clients, self.probe]:
            client.retry_writes_until = self.client_end
        self.probe.op_deadline = allowed * TICK
        if self.probe.current is None:
            self._begin_probe()
        else:  # still registering: the write follows
            self._probe_write_waits = True
        self.at(allowed * TICK, self._check_liveness, allowed)

    def _begin_probe(self) -> None:
        self._probe_write_waits = False
        self._begin(self.probe, ("write", -1) if self.workload.name == "register" else ("add", 1000))

    def _backlog_ticks(self) -> int:
        """Extra ticks a configuration that ships few entries per round trip needs for the log built up meanwhile.

        A follower far behind receives at most max_entries_per_message x max_inflight_messages entries per
        round trip; with 1 x 1 and 25-unit delays a backlog of a hundred entries takes longer than the base
        allowance, through no fault of the protocol.
        """
        cores = [n.core for n in self.nodes.values() if n.core is not None]
        backlog = max(c.log.last_index() for c in cores) - min(c.commit for c in cores)
        per_round_trip = self.raft_config.max_entries_per_message * self.raft_config.max_inflight_messages
        round_trip_ticks = -(-(2 * self.faults.link.max_delay + 3) // TICK)
        return -(-backlog // per_round_trip) * round_trip_ticks

    def _check_liveness(self, allowed: int) -> None:
        done = self.probe.history and self.probe.history[-1].ret is not None
        if not done:
            raise Violation(f"liveness: no write completed within {allowed} ticks after faults stopped")

    # -- clients --------------------------------------------------------------------------------------------

    def _next_operation(self, client: SimClient) -> None:
        if self.now >= self.client_end:
            return
        self._begin(client, self.workload.next_input(client.rng, next(self._unique)))
        if self.faulty and self.restart_rng.random() < self.config.client_restarts:
            self.at(self.restart_rng.randint(1, 20 * TICK), self._restart_client, client)

    def _restart_client(self, client: SimClient) -> None:
        """The client process dies (during this operation or a later one) and comes back without its session."""
        self.client_restarts += 1
        client.forget_session()
        client.leader_guess = None
        if client.current is None:  # between operations: the next one is scheduled already
            self.log(f"client {client.label} restarts")
            return
        self.log(f"client {client.label} restarts during {client.current.input}")
        client.abandon()  # it never learns the outcome; attempts already sent may still commit
        self.at(client.rng.randint(1, 3 * TICK), self._next_operation, client)

    def _begin(self, client: SimClient, op_input: tuple[str, Any]) -> None:
        client.begin(op_input, self.now)
        self._attempt(client, client.op_no)

    def _attempt(self, client: SimClient, op_no: int) -> None:
        current = client.current
        if current is None or client.op_no != op_no:
            return  # answered meanwhile
        if self.now >= current.deadline:
            self._give_up(client)
            return
        target = client.leader_guess if client.leader_guess is not None else client.rng.choice(self.members)
        req = client.request()
        self.at(client.rng.randint(1, 5), self._request, req, target)
        self.at(10 * TICK, self._attempt_timeout, client, req)

    def _request(self, req: Request, target: int) -> None:
        node = self.nodes[target]
        if node.alive and not self._paused(node, self._request, req, target):
            if self.trace:
                self.log(f"client {req.client.label} -> n{target} {req.input} (attempt {req.attempt})")
            node.request(req)

    def reply(self, req: Request, outcome: str, value: Any) -> None:
        self.at(req.client.rng.randint(1, 5), self._reply, req, outcome, value)

    def _reply(self, req: Request, outcome: str, value: Any) -> None:
        client = req.client
        if not client.is_current(req):
            return  # an answer to an earlier attempt of an operation that has completed
        if outcome == OK and (req.registering or isinstance(value, SessionError)):
            self._session_reply(req, value)
            return
        if outcome == OK:
            output = decode_output(value) if req.input[0] == "read" else None
            client.finish(output, self.now)
            self.log(f"client {client.label} <- {req.input} = {output}")
            if client is not self.probe:
                self.at(client.rng.randint(1, 3 * TICK), self._next_operation, client)
            return
        client.leader_guess = value if outcome == NOT_LEADER and value != req.client.leader_guess else None
        if req.attempt == client.current.attempt:  # type: ignore[union-attr]
            self.at(client.rng.randint(1, TICK), self._attempt, client, req.op_no)

    def _session_reply(self, req: Request, value: Any) -> None:
        """A registration answered, or a write the session layer refused."""
        client = req.client
        if req.registering:
            if isinstance(value, SessionError):  # each registration is proposed alone in its entry
                raise Violation(f"client {client.label}: registration refused: {value}")
            if client.session is None:  # else an answer to an earlier attempt: that session stays unused
                client.registered(decode_session(value))
                self.log(f"client {client.label} registered session {client.session}")
                if client.current is not None:
                    self._attempt(client, req.op_no)
                elif client is self.probe and self._probe_write_waits:
                    self._begin_probe()
        elif isinstance(value, SessionExpired):
            # An earlier attempt may have applied before the session expired: the outcome is unknown.
            self.expired += 1
            self.log(f"client {client.label}: session {req.session} expired during {req.input}")
            client.forget_session()
            client.abandon()
            if client is self.probe:
                self._begin_probe()
            else:
                self.at(client.rng.randint(1, 3 * TICK), self._next_operation, client)
        elif isinstance(value, DuplicateCommand):
            raise Violation(f"client {client.label}: its current write {req.input} was answered as a duplicate")
        elif req.attempt == client.current.attempt:  # type: ignore[union-attr]  # TooManyPending: not applied, retry
            self.at(client.rng.randint(1, TICK), self._attempt, client, req.op_no)

    def _attempt_timeout(self, client: SimClient, req: Request) -> None:
        if client.is_current(req) and req.attempt == client.current.attempt:  # type: ignore[union-attr]
            client.leader_guess = None
            self._attempt(client, req.op_no)

    def _give_up(self, client: SimClient) -> None:
        self.log(f"client {client.label} gives up on {client.current.input}")  # type: ignore[union-attr]
        client.abandon()
        if client is self.probe:
            self._probe_write_waits = False  # the run is over: nothing is left to wait for
        if client is not self.probe:
            self.at(client.rng.randint(1, 3 * TICK), self._next_operation, client)

    # -- verdict --------------------------------------------------------------------------------------------

    def recovery_ticks(self) -> float | None:
        """How long after faults stopped the liveness write took to complete."""
        if not self.probe.history or self.probe.history[-1].ret is None:
            return None
        return (self.probe.history[-1].ret - self.fault_end) / TICK

    def history(self) -> list[Any]:
        ops = [op for c in self.clients for op in c.history]
        return ops + self.probe.history

    def check_history(self) -> CheckResult:
        return check(self.history(), self.workload.model, timeout=None, max_steps=self.config.check_steps)


def _brief(m: Message) -> str:
    name = type(m).__name__
    extra = ""
    if hasattr(m, "entries"):
        extra = f" prev={m.prev_log_index}/{m.prev_log_term} n={len(m.entries)} commit={m.leader_commit}"
    elif hasattr(m, "granted"):
        extra = f" granted={m.granted} pre={m.pre_vote}"
    elif hasattr(m, "success"):
        extra = f" ok={m.success} match={m.match_index}"
    return f"{name} {m.src}->{m.dst} t{m.term}{extra}"


def run_seed(seed: int, config: SimConfig = SimConfig(), trace: Callable[[str], None] | None = None) -> SimResult:
    """Run one seed to its verdict. Never raises for a failure of the system under test: it reports it."""
    sim = Simulation(seed, config, trace)
    result = SimResult(seed=seed, ok=False, workload=sim.workload.name)
    try:
        sim.run()
        verdict = sim.check_history()
        result.linearizable = verdict.ok
        if verdict.ok is True:
            result.ok = True
        elif verdict.ok is False:
            result.kind, result.failure = "linearizability", verdict.explanation
        else:
            # The checker gave up: an unchecked history proves nothing, so it must not pass as one.
            result.kind, result.failure = "linearizability-undecided", verdict.explanation
    except Violation as exc:
        result.kind = "liveness" if str(exc).startswith("liveness") else "safety"
        result.failure = f"t={sim.now}: {exc}"
    except Exception as exc:  # the core itself refused something (e.g. to truncate a committed entry)
        result.kind = "exception"
        result.failure = f"t={sim.now}: {type(exc).__name__}: {exc}\n{traceback.format_exc(limit=4)}"
    history = sim.history()
    result.time, result.events = sim.now, sim.events
    result.terms, result.committed = len(sim.checker.leaders), len(sim.checker.committed)
    result.recovery_ticks = sim.recovery_ticks()
    result.operations, result.unknown = len(history), sum(op.ret is None for op in history)
    result.expired, result.client_restarts = sim.expired, sim.client_restarts
    return result
