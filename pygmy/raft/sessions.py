"""Client sessions: a command retried after a timeout or a leader change is applied at most once.

A client tags each command with its id and a sequence number (Raft thesis §6.3). `SessionStateMachine`
wraps any state machine: when a committed command arrives it applies the payload only if that
(client, seq) is new, and otherwise returns the result it cached the first time — so the retry gets the
same answer and the state changes once. Commands carry the client's `ack`: every seq up to it has been
answered, so their cached results can go. The session table is part of the state machine's snapshot,
otherwise a replica restored from a snapshot would apply a retry again.

Pure and deterministic (every replica must make the same decision); no clock: the table is bounded by
evicting the least recently used client, whose later retries would then apply again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import msgspec

ClientId = int | str

# What a duplicate of an already acknowledged command gets: its client has its real result already.
DUPLICATE = b"\x00pygmy:duplicate"


class StateMachine(Protocol):
    def apply(self, command: bytes) -> bytes: ...

    def query(self, query: bytes) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class SessionCommand(msgspec.Struct, frozen=True, array_like=True):
    client: ClientId
    seq: int  # 1, 2, 3, ... per client; 0 = no session (applied every time it is committed)
    payload: bytes
    ack: int = 0  # the client has the results of every seq <= ack


class _Session(msgspec.Struct, array_like=True):
    ack: int = 0
    results: dict[int, bytes] = msgspec.field(default_factory=dict)


class _Snapshot(msgspec.Struct, array_like=True):
    state: bytes
    sessions: list[tuple[ClientId, _Session]]


_encode = msgspec.msgpack.Encoder().encode
_decode_command = msgspec.msgpack.Decoder(SessionCommand).decode
_decode_snapshot = msgspec.msgpack.Decoder(_Snapshot).decode


def encode_command(client: ClientId, seq: int, payload: bytes, ack: int = 0) -> bytes:
    """The bytes to propose for `payload`, sent as command `seq` of `client`."""
    return _encode(SessionCommand(client, seq, payload, ack))


def decode_command(data: bytes) -> SessionCommand:
    return _decode_command(data)


class ClientSessions:
    """The table of the last results per client, and the at-most-once decision."""

    def __init__(self, max_clients: int = 10_000) -> None:
        self.max_clients = max_clients
        self._sessions: OrderedDict[ClientId, _Session] = OrderedDict()

    def apply(self, command: SessionCommand, apply_payload: StateMachine) -> bytes:
        if command.seq == 0:
            return apply_payload.apply(command.payload)
        session = self._touch(command.client)
        self._forget_acknowledged(session, command.ack)
        if command.seq in session.results:
            return session.results[command.seq]  # a retry: same answer, no second effect
        if command.seq <= session.ack:
            return DUPLICATE
        result = apply_payload.apply(command.payload)
        session.results[command.seq] = result
        return result

    def _touch(self, client: ClientId) -> _Session:
        session = self._sessions.pop(client, None) or _Session()
        self._sessions[client] = session
        while len(self._sessions) > self.max_clients:
            self._sessions.popitem(last=False)
        return session

    @staticmethod
    def _forget_acknowledged(session: _Session, ack: int) -> None:
        if ack > session.ack:
            session.ack = ack
            for seq in [seq for seq in session.results if seq <= ack]:
                del session.results[seq]

    def dump(self) -> list[tuple[ClientId, _Session]]:
        return list(self._sessions.items())

    def load(self, sessions: list[tuple[ClientId, _Session]]) -> None:
        self._sessions = OrderedDict(sessions)


class SessionStateMachine:
    """Wraps a state machine so that each (client, seq) command takes effect at most once."""

    def __init__(self, inner: StateMachine, max_clients: int = 10_000) -> None:
        self.inner = inner
        self.sessions = ClientSessions(max_clients)

    def apply(self, command: bytes) -> bytes:
        return self.sessions.apply(decode_command(command), self.inner)

    def query(self, query: bytes) -> bytes:
        return self.inner.query(query)

    def snapshot(self) -> bytes:
        return _encode(_Snapshot(self.inner.snapshot(), self.sessions.dump()))

    def restore(self, data: bytes) -> None:
        snapshot = _decode_snapshot(data)
        self.inner.restore(snapshot.state)
        self.sessions.load(snapshot.sessions)
