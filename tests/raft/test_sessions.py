"""Client sessions: each (client, seq) command is applied at most once, and the table survives snapshots."""

from __future__ import annotations

import msgspec

from pygmy.raft.sessions import DUPLICATE, SessionStateMachine, decode_command, encode_command


class Counter:
    """A tiny state machine: each command adds its payload's integer; the result is the new total."""

    def __init__(self) -> None:
        self.total = 0

    def apply(self, command: bytes) -> bytes:
        self.total += int(command)
        return b"%d" % self.total

    def query(self, query: bytes) -> bytes:
        return b"%d" % self.total

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.total)

    def restore(self, data: bytes) -> None:
        self.total = msgspec.msgpack.decode(data)


def test_a_command_round_trips_through_its_encoding() -> None:
    command = decode_command(encode_command("frontend-1", 7, b"payload", ack=5))
    assert (command.client, command.seq, command.payload, command.ack) == ("frontend-1", 7, b"payload", 5)


def test_a_retried_command_is_applied_once_and_gets_the_first_result() -> None:
    sm = SessionStateMachine(Counter())
    first = sm.apply(encode_command(1, 1, b"5"))
    retry = sm.apply(encode_command(1, 1, b"5"))
    assert first == retry == b"5" and sm.inner.total == 5


def test_different_clients_with_the_same_seq_are_different_commands() -> None:
    sm = SessionStateMachine(Counter())
    sm.apply(encode_command(1, 1, b"5"))
    sm.apply(encode_command(2, 1, b"5"))
    assert sm.inner.total == 10


def test_a_client_may_have_several_commands_in_flight() -> None:
    sm = SessionStateMachine(Counter())
    results = [sm.apply(encode_command("c", seq, b"1")) for seq in (1, 2, 3)]
    assert sm.apply(encode_command("c", 2, b"1")) == results[1] == b"2"
    assert sm.inner.total == 3


def test_acknowledged_results_are_forgotten_and_their_duplicates_have_no_effect() -> None:
    sm = SessionStateMachine(Counter())
    sm.apply(encode_command("c", 1, b"1"))
    sm.apply(encode_command("c", 2, b"1", ack=1))
    assert sm.apply(encode_command("c", 1, b"1")) == DUPLICATE
    assert sm.inner.total == 2


def test_commands_without_a_session_apply_every_time() -> None:
    sm = SessionStateMachine(Counter())
    sm.apply(encode_command("c", 0, b"1"))
    sm.apply(encode_command("c", 0, b"1"))
    assert sm.inner.total == 2


def test_the_session_table_travels_with_the_snapshot() -> None:
    leader = SessionStateMachine(Counter())
    leader.apply(encode_command(1, 1, b"5"))
    restored = SessionStateMachine(Counter())
    restored.restore(leader.snapshot())
    assert restored.apply(encode_command(1, 1, b"5")) == b"5"  # the retry reaches a replica restored from a snapshot
    assert restored.inner.total == 5


def test_the_least_recently_used_client_is_evicted_when_the_table_is_full() -> None:
    sm = SessionStateMachine(Counter(), max_clients=2)
    for client in ("a", "b", "c"):
        sm.apply(encode_command(client, 1, b"1"))
    assert [client for client, _ in sm.sessions.dump()] == ["b", "c"]
    sm.apply(encode_command("a", 1, b"1"))  # "a" was forgotten: its late retry applies again
    assert sm.inner.total == 4


def test_replicas_applying_the_same_commands_produce_the_same_snapshot() -> None:
    commands = [encode_command(c, s, b"2", ack=s - 1) for s in (1, 2) for c in ("x", "y")]
    replicas = [SessionStateMachine(Counter()) for _ in range(2)]
    for replica in replicas:
        for command in commands + commands[:2]:
            replica.apply(command)
    assert replicas[0].snapshot() == replicas[1].snapshot()
