"""Durable Raft storage: what a node writes is what it restarts from, even after a crash mid-write."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import msgspec
import pytest

from pygmy.raft.messages import Entry, HardState, Snapshot
from pygmy.raft.storage import RaftStorage, StorageCorrupt, frame


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"cmd{i}".encode()) for i in range(first, last + 1)]


def test_restart_returns_hard_state_and_entries(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=3, vote=2, commit=0), entries(1, 5, term=3))
    s.save(HardState(term=3, vote=2, commit=4), [])
    s.close()
    state = RaftStorage(tmp_path).state()
    assert state.hard_state == HardState(term=3, vote=2, commit=4)
    assert state.entries == tuple(entries(1, 5, term=3))
    assert state.snapshot == Snapshot()


def test_conflicting_suffix_is_replaced_and_matching_prefix_kept(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 6, term=1))
    s.save(HardState(term=2), entries(4, 4, term=2))  # conflict at 4: 4..6 of term 1 go, 1..3 stay
    expected = tuple(entries(1, 3, term=1) + entries(4, 4, term=2))
    assert s.state().entries == expected
    s.close()
    assert RaftStorage(tmp_path).state().entries == expected


def test_torn_tail_recovers_the_whole_records_before_it(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1, vote=1), entries(1, 3))
    s.save(None, entries(4, 6))
    s.close()
    wal = tmp_path / "wal"
    size = wal.stat().st_size
    os.truncate(wal, size - 5)  # the crash hit in the middle of the second record
    recovered = RaftStorage(tmp_path)
    assert recovered.state().entries == tuple(entries(1, 3))
    assert recovered.state().hard_state == HardState(term=1, vote=1)
    # The torn bytes are cut off, so new appends follow the good prefix.
    recovered.save(None, entries(4, 4, term=2))
    recovered.close()
    assert RaftStorage(tmp_path).state().entries == tuple(entries(1, 3) + entries(4, 4, term=2))


def test_corrupt_tail_bytes_are_detected_by_crc(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 2))
    s.save(None, entries(3, 4))
    s.close()
    wal = tmp_path / "wal"
    data = bytearray(wal.read_bytes())
    data[-1] ^= 0xFF
    wal.write_bytes(bytes(data))
    assert RaftStorage(tmp_path).state().entries == tuple(entries(1, 2))


def test_snapshot_compacts_the_log_and_survives_restart(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1, vote=1, commit=8), entries(1, 10))
    s.compact(Snapshot(index=8, term=1, data=b"state@8"))
    assert s.state().entries == tuple(entries(9, 10))
    s.save(None, entries(11, 12))
    s.close()
    state = RaftStorage(tmp_path).state()
    assert state.snapshot == Snapshot(index=8, term=1, data=b"state@8")
    assert state.entries == tuple(entries(9, 12))
    assert state.hard_state.commit == 8


def test_snapshot_from_the_leader_replaces_the_whole_log(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 10, term=1))
    s.save(HardState(term=3), entries(6, 7, term=3), Snapshot(index=5, term=1, data=b"leader's"))
    assert s.state().entries == tuple(entries(6, 7, term=3))
    s.close()
    state = RaftStorage(tmp_path).state()
    assert state.snapshot == Snapshot(index=5, term=1, data=b"leader's")
    assert state.entries == tuple(entries(6, 7, term=3))


def test_log_that_disagrees_with_the_snapshot_is_dropped_on_restart(tmp_path: Path) -> None:
    # A crash between writing an installed snapshot and rewriting the WAL leaves the old log behind.
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 10, term=1))
    s.close()
    (tmp_path / "snapshot").write_bytes(frame(msgspec.msgpack.encode(Snapshot(index=5, term=2, data=b"other"))))
    assert RaftStorage(tmp_path).state().entries == ()


def test_snapshot_beyond_the_log_starts_an_empty_log_after_it(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1), entries(1, 3))
    s.compact(Snapshot(index=100, term=4, data=b"x"))
    s.save(None, entries(101, 101, term=4))
    s.close()
    state = RaftStorage(tmp_path).state()
    assert state.entries == tuple(entries(101, 101, term=4))
    assert state.hard_state.commit == 100


def test_a_gap_in_the_log_is_refused(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(None, entries(1, 2))
    with pytest.raises(StorageCorrupt):
        s.save(None, entries(5, 5))


_WRITER = """
import sys
from pygmy.raft.messages import Entry, HardState
from pygmy.raft.storage import RaftStorage
s = RaftStorage(sys.argv[1])
s.save(HardState(term=7, vote=3, commit=0), [Entry(term=7, index=1, data=b"x")])
print("saved", flush=True)
sys.stdin.read()  # wait to be killed
"""


def test_hard_state_survives_kill_9(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _WRITER, str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "saved"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    state = RaftStorage(tmp_path).state()
    assert state.hard_state == HardState(term=7, vote=3, commit=0)
    assert state.entries == (Entry(term=7, index=1, data=b"x"),)
