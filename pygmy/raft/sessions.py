"""Client sessions: each command of a session takes effect at most once, however often it is retried.

Ongaro's thesis §6.3. A client first *registers* a session through the log (a `Register` command); the
session's id is the log index of that registration, so every replica assigns the same id without talking
to anyone. A registration may carry a key the client chose for this incarnation (random bytes, say): a
retried registration with the key of a live session gets that session back instead of opening another,
so retries under a slow log do not fill the table with sessions nobody uses. Each later command carries
(session, seq, payload, ack): seq numbers the session's commands 1, 2, 3, ...; ack says the client has
the results of every seq <= ack. `SessionStateMachine` wraps any
state machine and, for each committed command, decides:

- seq 0 (no session): applied every time it is committed (for internal commands only);
- unknown or expired session: `SessionExpired`, not applied. The client must register again; whether an
  earlier attempt of that command took effect is unknown to it, which is the honest answer;
- seq already applied: the result of the first application (or `CommandFailed` if the state machine
  refused it then), no second effect;
- seq <= ack whose result was dropped: `DuplicateCommand`, not applied (the client said it has the
  answer, so only a stale retry can ask);
- more than `max_pending` results of the session not acknowledged: `TooManyPending`, not applied (retry
  after acknowledging): the results kept per session are bounded rather than silently evicted;
- otherwise: applied once, its result kept until acknowledged.

Expiry is decided by the log, never by a replica's clock: every replica applies the same commands at the
same indexes, so it takes the same decisions. The table holds at most `max_sessions`; a registration
beyond that expires the session least recently active (the one whose latest command has the lowest log
index). Optionally (`idle_entries`), a session whose latest command is more than that many log indexes
behind the command being applied expires too. A log distance, unlike the leader timestamp LogCabin puts
in each entry, means different wall times under different loads; it needs nothing from the core and no
clock agreement between successive leaders, and the size limit, which bounds the memory, is the rule
that matters.

The whole table is part of the snapshot, encoded deterministically (sessions in activity order, each one's
results in application order), otherwise a replica restored from a snapshot would apply a retry again.
Every refusal is a `CommandRejected` (declared, the same on every replica): the runtime hands it to the
caller and the log moves on. Pure: no clock, no randomness, no I/O.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol

import msgspec

from pygmy.raft.driver import CommandRejected

SessionId = int  # the log index of the session's registration; 0 = no session
NO_SESSION: SessionId = 0


class StateMachine(Protocol):
    """What a service replicates. `apply` must be deterministic: every replica applies the same commands."""

    def apply(self, command: bytes) -> bytes: ...

    def query(self, query: bytes) -> bytes: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...


class DurableStateMachine(StateMachine, Protocol):
    """A state machine kept on disk (see `pygmy.raft.sqlite_machine`).

    It makes an entry durable in `commit_entry`, atomically with the entry's index and the session table:
    if the table were stored apart from the state, a restart that skips the entries the state holds would
    have lost their de-duplication, and a retry would apply again.
    """

    def commit_entry(self, index: int, term: int, sessions: bytes) -> None: ...

    def durable_state(self) -> tuple[int, int, bytes]:
        """(index, term, sessions) as of the last `commit_entry`; (0, 0, b"") if none."""
        ...


class SessionError(CommandRejected):
    """The session layer's declared answer to a command it did not apply. Every replica answers the same."""


class SessionExpired(SessionError):
    """The session is unknown or has expired: the command was not applied. Register a new session; whether an
    earlier attempt of this command took effect cannot be known."""

    def __init__(self, session: SessionId) -> None:
        super().__init__(f"session {session} is unknown or expired; register a new one")
        self.session = session


class DuplicateCommand(SessionError):
    """A command whose seq the client has acknowledged: its result is gone and it is not applied again."""

    def __init__(self, session: SessionId, seq: int) -> None:
        super().__init__(f"command {seq} of session {session} was acknowledged already; not applied again")
        self.session, self.seq = session, seq


class TooManyPending(SessionError):
    """The session holds `limit` unacknowledged results: the command was not applied. Acknowledge, then retry."""

    def __init__(self, session: SessionId, seq: int, limit: int) -> None:
        super().__init__(f"session {session} has {limit} unacknowledged results; command {seq} not applied")
        self.session, self.seq, self.limit = session, seq, limit


class CommandFailed(CommandRejected):
    """A retry of a command the state machine refused when it was first applied: not applied again; `error`
    names the first refusal (the first caller got the original exception)."""

    def __init__(self, session: SessionId, seq: int, error: str) -> None:
        super().__init__(f"command {seq} of session {session} failed when first applied: {error}")
        self.session, self.seq, self.error = session, seq, error


class Register(msgspec.Struct, frozen=True, array_like=True, tag=0):
    """Open a session; its id is the index of the log entry carrying this command."""

    key: bytes = b""  # the client's key for this incarnation; b"": every registration opens a new session


class SessionCommand(msgspec.Struct, frozen=True, array_like=True, tag=1):
    session: SessionId
    seq: int  # 1, 2, 3, ... per session; 0 = no session (applied every time it is committed)
    payload: bytes
    ack: int = 0  # the client has the results of every seq <= ack


class _Result(msgspec.Struct, frozen=True, array_like=True):
    output: bytes = b""
    error: str | None = None  # the first application was refused with this (type and message)


class _Session(msgspec.Struct, array_like=True):
    id: SessionId
    last_active: int  # log index of the session's latest command (or of its registration)
    key: bytes = b""
    ack: int = 0
    results: dict[int, _Result] = msgspec.field(default_factory=dict)  # seq -> result, in application order


class _Snapshot(msgspec.Struct, array_like=True):
    state: bytes
    sessions: list[_Session]  # least recently active first
    last_registration: int


class _Table(msgspec.Struct, array_like=True):
    """The session table alone, as a durable state machine stores it beside its state."""

    sessions: list[_Session]
    last_registration: int


_encode = msgspec.msgpack.Encoder().encode
_decode_command = msgspec.msgpack.Decoder(Register | SessionCommand).decode
_decode_snapshot = msgspec.msgpack.Decoder(_Snapshot).decode
_decode_table = msgspec.msgpack.Decoder(_Table).decode
_decode_int = msgspec.msgpack.Decoder(int).decode


def encode_register(key: bytes = b"") -> bytes:
    """The bytes to propose to open a session (`key`: see `Register`). It must travel alone in its log entry
    (its id is the entry's index)."""
    return _encode(Register(key))


def encode_command(session: SessionId, seq: int, payload: bytes, ack: int = 0) -> bytes:
    """The bytes to propose for `payload`, sent as command `seq` of `session` (0, 0: no session)."""
    return _encode(SessionCommand(session, seq, payload, ack))


def decode_command(data: bytes) -> Register | SessionCommand:
    return _decode_command(data)


def decode_session(result: bytes) -> SessionId:
    """The session id in the result of applying a `Register`."""
    return _decode_int(result)


class SessionTable:
    """The sessions a replica knows, least recently active first, and the at-most-once decision."""

    def __init__(self, max_sessions: int = 10_000, max_pending: int = 128, idle_entries: int | None = None) -> None:
        if max_sessions < 1 or max_pending < 1:
            raise ValueError("a session table needs room for one session and one result")
        self.max_sessions = max_sessions
        self.max_pending = max_pending
        self.idle_entries = idle_entries
        self._sessions: OrderedDict[SessionId, _Session] = OrderedDict()
        self._by_key: dict[bytes, SessionId] = {}
        self._last_registration = 0

    def register(self, index: int, key: bytes = b"") -> SessionId:
        self._expire_idle(index)
        if key and (known := self._by_key.get(key)) is not None:
            self._touch(self._sessions[known], index)  # a retried registration: the same session
            return known
        if index <= self._last_registration:
            # Two registrations in one entry would share an id, i.e. two clients one session.
            raise SessionError(f"a second registration at log index {index}: a registration travels alone")
        while len(self._sessions) >= self.max_sessions:
            self._expire_least_recently_active()
        self._sessions[index] = _Session(index, index, key)
        if key:
            self._by_key[key] = index
        self._last_registration = index
        return index

    def apply(self, index: int, command: SessionCommand, machine: StateMachine) -> bytes:
        self._expire_idle(index)
        if command.seq == 0:
            return machine.apply(command.payload)
        session = self._sessions.get(command.session)
        if session is None:
            raise SessionExpired(command.session)
        self._touch(session, index)
        _forget_acknowledged(session, command.ack)
        if (result := session.results.get(command.seq)) is not None:
            if result.error is not None:
                raise CommandFailed(session.id, command.seq, result.error)
            return result.output  # a retry: the first answer, no second effect
        if command.seq <= session.ack:
            raise DuplicateCommand(session.id, command.seq)
        if len(session.results) >= self.max_pending:
            raise TooManyPending(session.id, command.seq, self.max_pending)
        try:
            output = machine.apply(command.payload)
        except CommandRejected as exc:
            # Applied, and refused: a retry must hear the same, not be applied again to a changed state.
            # (Any other exception is no answer: the runtime stops the replica.)
            session.results[command.seq] = _Result(error=f"{type(exc).__name__}: {exc}")
            raise
        session.results[command.seq] = _Result(output)
        return output

    def _touch(self, session: _Session, index: int) -> None:
        session.last_active = index
        self._sessions.move_to_end(session.id)

    def _expire_idle(self, index: int) -> None:
        if self.idle_entries is None:
            return
        # Activity order is log order, so the idle sessions are at the front.
        while self._sessions and next(iter(self._sessions.values())).last_active < index - self.idle_entries:
            self._expire_least_recently_active()

    def _expire_least_recently_active(self) -> None:
        _, session = self._sessions.popitem(last=False)
        self._by_key.pop(session.key, None)

    def __contains__(self, session: SessionId) -> bool:
        return session in self._sessions

    def ids(self) -> list[SessionId]:
        """The live sessions, least recently active first (the next to expire first)."""
        return list(self._sessions)

    def pending(self, session: SessionId) -> int:
        """How many results `session` keeps (applied, not yet acknowledged)."""
        return len(self._sessions[session].results)

    def dump(self) -> tuple[list[_Session], int]:
        return list(self._sessions.values()), self._last_registration

    def load(self, sessions: list[_Session], last_registration: int) -> None:
        self._sessions = OrderedDict((session.id, session) for session in sessions)
        self._by_key = {session.key: session.id for session in sessions if session.key}
        self._last_registration = last_registration


def _forget_acknowledged(session: _Session, ack: int) -> None:
    if ack > session.ack:
        session.ack = ack
        for seq in [seq for seq in session.results if seq <= ack]:
            del session.results[seq]


class SessionStateMachine:
    """Wraps a state machine so that each (session, seq) command takes effect at most once.

    `apply(index, data)` takes the log index of the entry carrying `data`: a registration's id is that index,
    and expiry is measured in it. Commands of one entry may share an index; registrations may not.
    """

    def __init__(
        self,
        inner: StateMachine,
        *,
        max_sessions: int = 10_000,
        max_pending: int = 128,
        idle_entries: int | None = None,
    ) -> None:
        self.inner = inner
        self.sessions = SessionTable(max_sessions, max_pending, idle_entries)
        # A durable inner machine keeps the table with its state: load what it last committed.
        self._durable = callable(getattr(inner, "commit_entry", None))
        if self._durable:
            _, _, table = inner.durable_state()  # type: ignore[attr-defined]
            if table:
                self._load_table(table)

    def applied(self, index: int, term: int) -> None:
        """The entry at `index` is applied: a durable inner machine commits it, with this table."""
        if self._durable:
            self.inner.commit_entry(index, term, self._dump_table())  # type: ignore[attr-defined]

    def durable_index(self) -> tuple[int, int]:
        if not self._durable:
            return 0, 0
        index, term, _ = self.inner.durable_state()  # type: ignore[attr-defined]
        return index, term

    def apply(self, index: int, data: bytes) -> bytes:
        """Apply one committed command; raises a `SessionError` for one it refuses (nothing applied)."""
        command = decode_command(data)
        if isinstance(command, Register):
            return _encode(self.sessions.register(index, command.key))
        return self.sessions.apply(index, command, self.inner)

    def query(self, query: bytes) -> bytes:
        return self.inner.query(query)

    def snapshot(self) -> bytes:
        sessions, last_registration = self.sessions.dump()
        return _encode(_Snapshot(self.inner.snapshot(), sessions, last_registration))

    def restore(self, data: bytes) -> None:
        snapshot = _decode_snapshot(data)
        self.inner.restore(snapshot.state)
        self.sessions.load(snapshot.sessions, snapshot.last_registration)

    def _dump_table(self) -> bytes:
        sessions, last_registration = self.sessions.dump()
        return _encode(_Table(sessions, last_registration))

    def _load_table(self, data: bytes) -> None:
        table = _decode_table(data)
        self.sessions.load(table.sessions, table.last_registration)
