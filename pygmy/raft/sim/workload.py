"""What simulated clients do: operations on a register or a counter, retried until answered or given up.

Each client runs one operation at a time. Before its first write it registers a client session through the
log (retried like a write until it succeeds); a write is then one session command (session, seq), so its
retries — after a timeout, a NotLeader or a dropped proposal — take effect at most once. A write is retried
until the faults are over and then some, so it seldom ends unknown; a read goes through ReadIndex and is given
up after a while (an unknown read costs the checker nothing). A write answered "session expired" ends with an
unknown outcome (an earlier attempt may have applied) and the client registers again before its next write;
so does a client that restarts, forgetting its session. Without sessions a write goes out with seq 0 and
every attempt that commits applies. The client records what an outside observer sees (call time, return
time, output, or "unknown" when it gave up), which is the history the linearizability checker judges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import msgspec

from pygmy.checker.linearizability import COUNTER, REGISTER, UNKNOWN, Model, Operation
from pygmy.raft.sessions import NO_SESSION, SessionId, encode_command, encode_register

_encode = msgspec.msgpack.encode
_decode = msgspec.msgpack.decode


class ValueMachine:
    """The replicated state: one value, a register ("write" replaces it) or a counter ("add" adds to it).

    The counter matters: unlike a register write, applying an addition twice shows in later reads.
    """

    def __init__(self, initial: Any = None) -> None:
        self.value = initial

    def apply(self, command: bytes) -> bytes:
        kind, arg = _decode(command)
        self.value = arg if kind == "write" else self.value + arg
        return _encode(None)

    def query(self, query: bytes) -> bytes:
        return _encode(self.value)

    def snapshot(self) -> bytes:
        return _encode(self.value)

    def restore(self, data: bytes) -> None:
        self.value = _decode(data)


@dataclass(frozen=True)
class Workload:
    name: str
    model: Model
    initial: Any

    def machine(self) -> ValueMachine:
        return ValueMachine(self.initial)

    def next_input(self, rng: random.Random, unique: int) -> tuple[str, Any]:
        if rng.random() < 0.4:
            return ("read", None)
        return ("write", unique) if self.name == "register" else ("add", rng.randint(1, 3))


WORKLOADS = {"register": Workload("register", REGISTER, None), "counter": Workload("counter", COUNTER, 0)}


def encode_input(op_input: tuple[str, Any]) -> bytes:
    return _encode(list(op_input))


def decode_output(result: bytes) -> Any:
    return _decode(result)


REGISTRATION: tuple[str, Any] = ("register", None)


@dataclass
class Request:
    """One attempt of a client operation, as a node receives it: a read, a write, or the registration of the
    session the write needs."""

    client: SimClient
    op_no: int
    attempt: int
    input: tuple[str, Any]
    session: SessionId
    seq: int
    ack: int
    registering: bool = False
    key: bytes = b""  # of the registration: its retries get the same session

    def envelope(self) -> bytes:
        """What a node proposes for this write attempt."""
        if self.registering:
            return encode_register(self.key)
        return encode_command(self.session, self.seq, encode_input(self.input), self.ack)


@dataclass
class _Current:
    input: tuple[str, Any]
    call: int
    deadline: int
    attempt: int = 0
    seq: int = 0  # a write's number in the client's session, once it has one


class SimClient:
    """A client process: issues operations one at a time and retries each until answered or out of time."""

    def __init__(
        self,
        label: int,
        rng: random.Random,
        workload: Workload,
        op_deadline: int,
        *,
        sessions: bool = True,
        retry_writes_until: int = 0,
    ) -> None:
        self.label = label
        self.rng = rng
        self.workload = workload
        self.op_deadline = op_deadline
        self.sessions = sessions
        # A write is retried with its session until at least this time, so that it rarely ends "unknown":
        # every unknown write multiplies the orders the linearizability checker must try.
        self.retry_writes_until = retry_writes_until
        self.session: SessionId | None = None if sessions else NO_SESSION  # None: to be registered
        self.sessions_asked = 0  # numbers the registration keys: a new key for each new session
        self.seq = 0
        self.op_no = 0
        self.leader_guess: int | None = None
        self.current: _Current | None = None
        self.history: list[Operation] = []

    def begin(self, op_input: tuple[str, Any], now: int) -> None:
        self.op_no += 1
        deadline = now + self.op_deadline
        if op_input[0] != "read":
            deadline = max(deadline, self.retry_writes_until)
        self.current = _Current(op_input, now, deadline)
        self._number_write()

    def begin_registration(self, now: int) -> None:
        """Open a session ahead of any write (an operation of its own, not in the history)."""
        self.begin(REGISTRATION, now)

    def _number_write(self) -> None:
        current = self.current
        if current is not None and current.input[0] not in ("read", "register") and current.seq == 0 and self.session:
            self.seq += 1
            current.seq = self.seq

    def request(self) -> Request:
        current = self.current
        assert current is not None
        current.attempt += 1
        attempt = (self, self.op_no, current.attempt, current.input)
        if current.input[0] == "read":
            return Request(*attempt, NO_SESSION, 0, 0)
        if self.session is None:
            return Request(*attempt, NO_SESSION, 0, 0, registering=True, key=f"{self.label}/{self.sessions_asked}".encode())
        # One operation at a time: every earlier write of this session has been answered.
        return Request(*attempt, self.session, current.seq, max(current.seq - 1, 0))

    def registered(self, session: SessionId) -> None:
        """The session the current write waited for is open: number the write in it."""
        self.session, self.seq = session, 0
        if self.current is not None and self.current.input == REGISTRATION:
            self.current = None  # that was all it had to do
        self._number_write()

    def forget_session(self) -> None:
        """The session expired, or the client restarted: the next write registers a new one."""
        if self.sessions:
            self.session = None
            self.sessions_asked += 1

    def finish(self, output: Any, now: int | None) -> None:
        """Record the operation; `now` None means the client gave up without learning the outcome."""
        assert self.current is not None
        self.history.append(Operation(self.label, self.current.input, self.current.call, output, now))
        self.current = None

    def abandon(self) -> None:
        """Record the current operation as of unknown outcome (given up, expired, or the client died)."""
        if self.current is not None and self.current.input == REGISTRATION:
            self.current = None  # a registration is no operation of the model: nothing to record
            return
        self.finish(UNKNOWN, None)

    def is_current(self, request: Request) -> bool:
        return self.current is not None and request.op_no == self.op_no
