"""Damage a crash cannot cause is reported, never repaired by dropping data; damage a crash can cause is cut off."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import msgspec
import pytest

from pygmy.raft.messages import Entry, HardState, Snapshot
from pygmy.raft.storage import RaftStorage, StorageCorrupt, frame

_HEADER_SIZE = 12  # payload length, payload CRC, header CRC


def entries(first: int, last: int, term: int = 1) -> list[Entry]:
    return [Entry(term=term, index=i, data=f"cmd{i}".encode()) for i in range(first, last + 1)]


def three_records(directory: Path) -> list[int]:
    """Term 3, then a vote for 3, then entries 1-3, each fsynced; returns where each record starts."""
    s = RaftStorage(directory)
    starts = []
    for hard_state, new in [(HardState(term=3), []), (HardState(term=3, vote=3), []), (None, entries(1, 3, term=3))]:
        starts.append((directory / "wal").stat().st_size)
        s.save(hard_state, new)
    s.close()
    return starts


def flip(path: Path, offset: int, mask: int = 0x01) -> bytes:
    data = bytearray(path.read_bytes())
    data[offset] ^= mask
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("record", [0, 1])
def test_a_flipped_bit_in_an_earlier_record_is_corruption_and_the_file_is_kept(tmp_path: Path, record: int) -> None:
    starts = three_records(tmp_path)
    wal = tmp_path / "wal"
    offset = starts[record] + _HEADER_SIZE + 1  # inside the payload
    damaged = flip(wal, offset)
    with pytest.raises(StorageCorrupt) as caught:
        RaftStorage(tmp_path)
    assert str(wal) in str(caught.value) and f"byte {starts[record]}" in str(caught.value)
    assert wal.read_bytes() == damaged  # the evidence is still there


@pytest.mark.parametrize("bit", [0, 4, 7])
def test_a_flipped_bit_in_a_length_cannot_swallow_the_records_after_it(tmp_path: Path, bit: int) -> None:
    # A larger length would make the first record look as if it ran past the end of the file (torn).
    starts = three_records(tmp_path)
    wal = tmp_path / "wal"
    damaged = flip(wal, starts[0] + 3, 1 << bit)  # the high byte of the first record's length
    with pytest.raises(StorageCorrupt, match=f"byte {starts[0]}"):
        RaftStorage(tmp_path)
    assert wal.read_bytes() == damaged


def test_a_flipped_bit_in_the_last_records_payload_is_a_torn_tail(tmp_path: Path) -> None:
    starts = three_records(tmp_path)
    wal = tmp_path / "wal"
    flip(wal, wal.stat().st_size - 1)
    state = RaftStorage(tmp_path).state()
    assert state.hard_state == HardState(term=3, vote=3)
    assert state.entries == ()
    assert wal.stat().st_size == starts[2]


def test_a_zero_filled_tail_is_torn_and_the_node_keeps_starting(tmp_path: Path) -> None:
    # The file grew but its data never reached the disk: what power loss leaves on many file systems.
    starts = three_records(tmp_path)
    wal = tmp_path / "wal"
    with wal.open("ab") as f:
        f.write(bytes(100))
    for _ in range(2):  # not a crash loop: the second start sees a clean file
        s = RaftStorage(tmp_path)
        assert s.state().entries == tuple(entries(1, 3, term=3))
        assert s.state().hard_state == HardState(term=3, vote=3)
        s.close()
    assert wal.stat().st_size > starts[2]
    assert not wal.read_bytes().endswith(bytes(100))


def test_zeros_over_the_last_records_header_with_its_payload_written_are_torn(tmp_path: Path) -> None:
    # A torn write may persist a later sector of the record and not the one holding its header.
    starts = three_records(tmp_path)
    wal = tmp_path / "wal"
    data = bytearray(wal.read_bytes())
    data[starts[2] : starts[2] + _HEADER_SIZE] = bytes(_HEADER_SIZE)
    wal.write_bytes(bytes(data))
    state = RaftStorage(tmp_path).state()
    assert state.hard_state == HardState(term=3, vote=3)
    assert state.entries == ()
    assert wal.stat().st_size == starts[2]


def test_a_record_that_passes_its_checksum_but_does_not_decode_is_corruption(tmp_path: Path) -> None:
    three_records(tmp_path)
    wal = tmp_path / "wal"
    with wal.open("ab") as f:
        f.write(frame(b"\x92\xc0\x91\x01"))  # [nil, [1]]: an entry that is not an entry
    size = wal.stat().st_size
    with pytest.raises(StorageCorrupt, match=f"{wal}.*byte {size - _HEADER_SIZE - 4}.*does not decode"):
        RaftStorage(tmp_path)
    assert wal.stat().st_size == size


def test_a_record_that_leaves_a_gap_is_corruption_naming_its_offset(tmp_path: Path) -> None:
    three_records(tmp_path)
    wal = tmp_path / "wal"
    offset = wal.stat().st_size
    with wal.open("ab") as f:
        f.write(frame(msgspec.msgpack.encode([None, [[3, 9, 0, b"x"]]])))
    with pytest.raises(StorageCorrupt, match=f"byte {offset}.*gap"):
        RaftStorage(tmp_path)


def test_a_damaged_snapshot_file_is_corruption(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1, commit=5), entries(1, 6))
    s.compact(Snapshot(index=5, term=1, data=b"state@5"))
    s.close()
    snapshot = tmp_path / "snapshot"
    damaged = flip(snapshot, snapshot.stat().st_size - 1)
    with pytest.raises(StorageCorrupt, match=str(snapshot)):
        RaftStorage(tmp_path)
    assert snapshot.read_bytes() == damaged


def test_a_zero_length_record_is_never_accepted(tmp_path: Path) -> None:
    three_records(tmp_path)
    wal = tmp_path / "wal"
    fields = struct.pack("<II", 0, 0)
    with wal.open("ab") as f:
        f.write(fields + struct.pack("<I", zlib.crc32(fields)))  # a well-formed header of an empty record
        f.write(frame(msgspec.msgpack.encode([[4, None, 0], []])))
    with pytest.raises(StorageCorrupt, match="impossible length 0"):
        RaftStorage(tmp_path)


def test_a_refused_save_writes_nothing(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(None, entries(1, 2))
    before = (tmp_path / "wal").read_bytes()
    with pytest.raises(StorageCorrupt, match="gap"):
        s.save(None, [Entry(term=1, index=5)])
    assert (tmp_path / "wal").read_bytes() == before
    s.save(None, entries(3, 3))  # the storage still works
    s.close()
    assert RaftStorage(tmp_path).state().entries == tuple(entries(1, 3))


def test_a_term_going_back_or_a_second_vote_is_refused(tmp_path: Path) -> None:
    s = RaftStorage(tmp_path)
    s.save(HardState(term=4, vote=2), [])
    before = (tmp_path / "wal").read_bytes()
    with pytest.raises(StorageCorrupt, match="below"):
        s.save(HardState(term=3, vote=2), [])
    with pytest.raises(StorageCorrupt, match="vote"):
        s.save(HardState(term=4, vote=3), [])
    with pytest.raises(StorageCorrupt, match="consecutive"):
        s.save(None, [Entry(term=4, index=1), Entry(term=4, index=3)])
    assert (tmp_path / "wal").read_bytes() == before
    s.close()
    assert RaftStorage(tmp_path).state().hard_state == HardState(term=4, vote=2)


def test_a_crash_between_the_snapshot_and_the_wal_rewrite_with_a_torn_tail_recovers(tmp_path: Path) -> None:
    # The new snapshot beside the old WAL (which also ends in a torn record): open finishes the rewrite.
    s = RaftStorage(tmp_path)
    s.save(HardState(term=1, vote=1), entries(1, 10))
    s.close()
    (tmp_path / "snapshot").write_bytes(frame(msgspec.msgpack.encode(Snapshot(index=5, term=1, data=b"state@5"))))
    with (tmp_path / "wal").open("ab") as f:
        f.write(b"\x07torn")
    s = RaftStorage(tmp_path)
    assert s.state().entries == tuple(entries(6, 10))
    s.save(None, entries(11, 12))
    s.close()
    state = RaftStorage(tmp_path).state()
    assert state.entries == tuple(entries(6, 12))
    assert state.hard_state == HardState(term=1, vote=1, commit=5)


def test_a_member_process_with_a_damaged_wal_refuses_to_start_in_one_line_and_an_exit_status_not_to_retry(
    tmp_path: Path,
) -> None:
    import subprocess
    import sys

    from support.cluster import free_ports
    from support.raft_cluster import REPO_ROOT
    from support.raft_member import EXIT_STORAGE_CORRUPT

    storage = RaftStorage(tmp_path)
    storage.save(HardState(term=3), [])
    storage.save(HardState(term=3, vote=3), [])
    storage.save(None, [Entry(3, 1), Entry(3, 2), Entry(3, 3)])
    storage.close()
    wal = tmp_path / "wal"
    damaged = bytearray(wal.read_bytes())
    damaged[14] ^= 0x01  # inside the first record's payload, with two records after it
    wal.write_bytes(bytes(damaged))
    raft_port, client_port = free_ports(2)
    member = subprocess.run(
        [sys.executable, "-m", "tests.support.raft_member", "--id", "1", "--peers", f"1=127.0.0.1:{raft_port}",
         "--client-port", str(client_port), "--data-dir", str(tmp_path), "--secret", "s"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert member.returncode == EXIT_STORAGE_CORRUPT
    lines = member.stderr.strip().splitlines()
    assert len(lines) == 1 and "refuses to start" in lines[0] and str(wal) in lines[0] and "byte 0" in lines[0]
    assert wal.read_bytes() == bytes(damaged)  # the evidence is left as it was
