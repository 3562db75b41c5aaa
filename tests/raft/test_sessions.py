"""Client sessions: registered through the log, each (session, seq) applied at most once, expiry decided by
the log alone, bounded results, and a table that travels with the snapshot."""

from __future__ import annotations

import msgspec
import pytest

from pygmy.raft.driver import CommandRejected
from pygmy.raft.sessions import (
    CommandFailed,
    DuplicateCommand,
    Register,
    SessionCommand,
    SessionError,
    SessionExpired,
    SessionStateMachine,
    TooManyPending,
    decode_command,
    decode_session,
    encode_command,
    encode_register,
)


class Counter:
    """A tiny state machine: each command adds its payload's integer (b"boom" raises); the result is the total."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, command: bytes) -> bytes:
        if command == b"boom":
            raise CommandRejected("refused")
        self.total += int(command)
        return b"%d" % self.total

    def query(self, query: bytes) -> bytes:
        return b"%d" % self.total

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.total)

    def restore(self, data: bytes) -> None:
        self.total = msgspec.msgpack.decode(data)


class Log:
    """Commands applied to a SessionStateMachine at consecutive log indexes, as a replica applies its log."""

    def __init__(self, **table: int | None) -> None:
        self.counter = Counter()
        self.sm = SessionStateMachine(self.counter, **table)  # type: ignore[arg-type]
        self.index = 0

    def register(self, key: bytes = b"") -> int:
        self.index += 1
        return decode_session(self.sm.apply(self.index, encode_register(key)))

    def command(self, session: int, seq: int, payload: bytes = b"1", ack: int = 0) -> bytes:
        self.index += 1
        return self.sm.apply(self.index, encode_command(session, seq, payload, ack))

    @property
    def total(self) -> int:
        return self.counter.total


def test_commands_round_trip_through_their_encoding() -> None:
    assert decode_command(encode_command(7, 3, b"payload", ack=2)) == SessionCommand(7, 3, b"payload", 2)
    assert decode_command(encode_register()) == Register()
    assert decode_command(encode_register(b"k")) == Register(b"k")


def test_a_session_id_is_the_log_index_of_its_registration() -> None:
    log = Log()
    log.command(0, 0)
    log.command(0, 0)
    assert log.register() == 3
    assert log.register() == 4


def test_a_retried_command_is_applied_once_and_gets_the_first_result() -> None:
    log = Log()
    s = log.register()
    first = log.command(s, 1, b"5")
    retry = log.command(s, 1, b"5")
    assert first == retry == b"5" and log.total == 5


def test_a_retried_registration_with_its_key_gets_the_same_session_and_expires_nothing() -> None:
    log = Log(max_sessions=2)
    other = log.register()
    first = log.register(b"client-7/1")
    assert log.register(b"client-7/1") == first  # its retry committed too: no second session
    assert log.sm.sessions.ids() == [other, first]
    assert log.register(b"client-7/2") != first  # a new key (a restarted client) opens a new session


def test_a_replica_restored_from_a_snapshot_knows_the_registration_keys() -> None:
    leader = Log()
    first = leader.register(b"k")
    restored = Log()
    restored.sm.restore(leader.sm.snapshot())
    restored.index = leader.index
    assert restored.register(b"k") == first


def test_a_key_whose_session_expired_opens_a_new_session() -> None:
    log = Log(max_sessions=1)
    first = log.register(b"k")
    log.register()  # expires first
    assert log.register(b"k") not in (first, 0)


def test_different_sessions_with_the_same_seq_are_different_commands() -> None:
    log = Log()
    a, b = log.register(), log.register()
    log.command(a, 1, b"5")
    log.command(b, 1, b"5")
    assert log.total == 10


def test_a_session_may_have_several_commands_in_flight() -> None:
    log = Log()
    s = log.register()
    results = [log.command(s, seq) for seq in (1, 2, 3)]
    assert log.command(s, 2) == results[1] == b"2"
    assert log.total == 3


def test_a_command_at_or_below_the_ack_is_refused_as_a_duplicate_and_not_applied() -> None:
    log = Log()
    s = log.register()
    log.command(s, 1)
    log.command(s, 2, ack=1)
    with pytest.raises(DuplicateCommand):
        log.command(s, 1)
    assert log.total == 2
    assert log.sm.sessions.pending(s) == 1  # the result of 1 was dropped when it was acknowledged


def test_commands_without_a_session_apply_every_time() -> None:
    log = Log()
    log.command(0, 0)
    log.command(0, 0)
    assert log.total == 2


def test_a_command_of_a_session_never_registered_is_refused_as_expired() -> None:
    log = Log()
    with pytest.raises(SessionExpired):
        log.command(42, 1)
    assert log.total == 0


def test_a_full_table_expires_its_least_recently_active_session_and_its_retry_is_not_applied_again() -> None:
    # Three sessions each add 1 with a table of two: the first one's late retry must not make it 4.
    log = Log(max_sessions=2)
    a = log.register()
    log.command(a, 1)
    b = log.register()
    log.command(b, 1)
    c = log.register()  # expires a, the least recently active
    log.command(c, 1)
    with pytest.raises(SessionExpired):
        log.command(a, 1)
    assert log.total == 3
    assert log.sm.sessions.ids() == [b, c]


def test_expiry_picks_the_session_least_recently_active_not_the_oldest_registered() -> None:
    log = Log(max_sessions=2)
    a, b = log.register(), log.register()
    log.command(a, 1)  # a is now more recently active than b
    log.register()
    assert a in log.sm.sessions and b not in log.sm.sessions


def test_a_refused_command_of_an_expired_session_does_not_revive_it() -> None:
    log = Log(max_sessions=1)
    a = log.register()
    log.register()
    for _ in range(2):
        with pytest.raises(SessionExpired):
            log.command(a, 1)
    assert a not in log.sm.sessions


def test_a_restarted_client_registers_a_new_session_and_its_commands_from_seq_1_apply() -> None:
    log = Log()
    old = log.register()
    for seq in (1, 2, 3):
        log.command(old, seq, ack=seq - 1)
    new = log.register()  # the client restarted: it forgot its session and numbers from 1 again
    assert new != old
    assert log.command(new, 1) == b"4" and log.command(new, 2, ack=1) == b"5"
    assert log.total == 5


def test_a_session_that_does_not_acknowledge_is_refused_beyond_its_pending_limit_until_it_does() -> None:
    log = Log(max_pending=3)
    s = log.register()
    for seq in (1, 2, 3):
        log.command(s, seq)
    with pytest.raises(TooManyPending):
        log.command(s, 4)
    assert log.total == 3 and log.sm.sessions.pending(s) == 3
    assert log.command(s, 4, ack=3) == b"4"  # acknowledging makes room; the refused command applies now
    assert log.sm.sessions.pending(s) == 1


def test_a_retry_of_a_command_the_state_machine_refused_hears_of_the_refusal_and_is_not_applied_again() -> None:
    log = Log()
    s = log.register()
    with pytest.raises(CommandRejected):
        log.command(s, 1, b"boom")
    with pytest.raises(CommandFailed) as retried:
        log.command(s, 1, b"boom")
    assert "CommandRejected: refused" in retried.value.error


def test_a_session_idle_for_more_than_the_limit_of_log_entries_expires() -> None:
    log = Log(idle_entries=5)
    idle, busy = log.register(), log.register()
    for seq in range(1, 8):
        log.command(busy, seq, ack=seq - 1)
    with pytest.raises(SessionExpired):
        log.command(idle, 1)
    assert log.sm.sessions.ids() == [busy]


def test_two_registrations_at_one_log_index_are_refused_rather_than_share_an_id() -> None:
    sm = SessionStateMachine(Counter())
    sm.apply(5, encode_register())
    with pytest.raises(SessionError):
        sm.apply(5, encode_register())


def test_the_session_table_travels_with_the_snapshot() -> None:
    leader = Log(max_sessions=2)
    a = leader.register()
    leader.command(a, 1, b"5")
    b = leader.register()
    restored = Log(max_sessions=2)
    restored.sm.restore(leader.sm.snapshot())
    restored.index = leader.index
    assert restored.command(a, 1, b"5") == b"5"  # the retry reaches a replica restored from a snapshot
    assert restored.total == 5
    restored.register()  # and the restored replica expires the same session the leader would: b
    assert restored.sm.sessions.ids() == [a, restored.index]
    assert b not in restored.sm.sessions


def test_replicas_applying_the_same_log_take_the_same_decisions_and_produce_the_same_snapshot() -> None:
    def run(log: Log, steps: list[tuple[str, int, int]]) -> list[bytes | str]:
        answers: list[bytes | str] = []
        for kind, session, seq in steps:
            try:
                registered = kind == "r"
                answers.append(log.register().to_bytes(4, "big") if registered else log.command(session, seq, ack=seq - 1))
            except SessionError as refused:
                answers.append(type(refused).__name__)
        return answers

    steps = [("r", 0, 0), ("r", 0, 0), ("c", 1, 1), ("c", 2, 1), ("r", 0, 0), ("c", 1, 2), ("c", 2, 2), ("c", 1, 1)]
    steps += [("r", 0, 0), ("c", 5, 1), ("c", 9, 1), ("c", 2, 3)]
    one, other = Log(max_sessions=2, idle_entries=6), Log(max_sessions=2, idle_entries=6)
    first = run(one, steps)
    halfway = run(other, steps[:6])
    fresh = Log(max_sessions=2, idle_entries=6)  # a third replica joins from the second one's snapshot
    fresh.sm.restore(other.sm.snapshot())
    fresh.index = other.index
    assert halfway + run(fresh, steps[6:]) == first
    assert "SessionExpired" in first  # the run does exercise expiry
    assert fresh.sm.snapshot() == one.sm.snapshot()


def test_a_snapshot_restored_and_taken_again_is_the_same_bytes() -> None:
    log = Log()
    s = log.register()
    log.command(s, 2)
    log.command(s, 1)
    again = SessionStateMachine(Counter())
    again.restore(log.sm.snapshot())
    assert again.snapshot() == log.sm.snapshot()
