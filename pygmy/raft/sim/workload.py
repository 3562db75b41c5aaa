"""What simulated clients do: operations on a register or a counter, retried until answered or given up.

Each client runs one operation at a time. A write is one session command (client session id, seq), so its
retries — after a timeout, a NotLeader or a dropped proposal — take effect at most once, and it is retried
until the faults are over and then some, so it seldom ends unknown; a read goes through ReadIndex and is given
up after a while (an unknown read costs the checker nothing). The client records what an outside observer sees (call time, return time, output, or "unknown"
when it gave up), which is the history the linearizability checker judges.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import msgspec

from pygmy.checker.linearizability import COUNTER, REGISTER, Model, Operation

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


@dataclass
class Request:
    """One attempt of a client operation, as a node receives it."""

    client: SimClient
    op_no: int
    attempt: int
    input: tuple[str, Any]
    session: int
    seq: int
    ack: int


@dataclass
class _Current:
    input: tuple[str, Any]
    call: int
    deadline: int
    attempt: int = 0


class SimClient:
    """A client process: issues operations one at a time and retries each until answered or out of time."""

    def __init__(
        self,
        label: int,
        session: int,
        rng: random.Random,
        workload: Workload,
        op_deadline: int,
        *,
        retry_writes_until: int = 0,
    ) -> None:
        self.label = label
        self.session = session
        self.rng = rng
        self.workload = workload
        self.op_deadline = op_deadline
        # A write is retried with its session until at least this time, so that it rarely ends "unknown":
        # every unknown write multiplies the orders the linearizability checker must try.
        self.retry_writes_until = retry_writes_until
        self.seq = 0
        self.op_no = 0
        self.leader_guess: int | None = None
        self.current: _Current | None = None
        self.history: list[Operation] = []

    def begin(self, op_input: tuple[str, Any], now: int) -> None:
        self.op_no += 1
        if op_input[0] != "read":
            self.seq += 1
        deadline = now + self.op_deadline
        if op_input[0] != "read":
            deadline = max(deadline, self.retry_writes_until)
        self.current = _Current(op_input, now, deadline)

    def request(self) -> Request:
        assert self.current is not None
        self.current.attempt += 1
        ack = self.seq - 1 if self.current.input[0] != "read" else self.seq
        return Request(self, self.op_no, self.current.attempt, self.current.input, self.session, self.seq, ack)

    def finish(self, output: Any, now: int | None) -> None:
        """Record the operation; `now` None means the client gave up without learning the outcome."""
        assert self.current is not None
        self.history.append(Operation(self.label, self.current.input, self.current.call, output, now))
        self.current = None

    def is_current(self, request: Request) -> bool:
        return self.current is not None and request.op_no == self.op_no
