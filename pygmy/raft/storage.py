"""Durable Raft state of one node: log entries, hard state (term, vote, commit) and the latest snapshot.

Everything lives in one directory:

- `wal` — an append-only file of records. Each record is one `save()` call (one Ready): the hard state,
  if it changed, and the new entries, msgpack-encoded behind an 8-byte header (payload length, CRC-32).
  A record is written with one `write` and made durable with one `fdatasync`, so all entries of a Ready
  share one sync (group commit) and term and vote always land together. Replaying the records rebuilds
  the log: an entry at index i replaces whatever was at i and after it, which is exactly Raft's "delete
  the conflicting suffix", so truncation needs no record of its own. A crash mid-write leaves a torn
  last record; `open()` keeps every record before it and cuts the file there.
- `snapshot` — the latest snapshot, replaced atomically (write a temporary file, fsync, rename, fsync
  the directory). Saving a snapshot also rewrites `wal` the same way, keeping only what follows it:
  after the node's own snapshot (`compact`) the entries after it, after one installed from the leader
  (`save(..., snapshot)`) nothing.

Why a file and not SQLite: measured on the target machine (quiet disk), a save of 1 entry costs 136 µs
and of 64 entries 185 µs (one fdatasync each), against 189 and 296 µs for SQLite in WAL mode with
synchronous=FULL; without fsync a save costs 3-35 µs, so the disk sets the price and batching is what
pays. Figures in docs/raft-benchmark.md, reproduced by `python -m benchmarks.raft_bench --micro`. (Writing
into a preallocated file cut the median fdatasync by roughly a third in a quick test, not its tail;
not done.)
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Sequence
from pathlib import Path

import msgspec

from pygmy.raft.messages import Entry, HardState, Snapshot

_HEADER = struct.Struct("<II")  # payload length, CRC-32 of the payload
_MAX_RECORD = 1 << 30  # a length above this can only come from a torn or corrupt header
_WAL = "wal"
_SNAPSHOT = "snapshot"


class StorageCorrupt(Exception):
    """The files hold something a crash cannot explain (a gap in the log, a bad snapshot)."""


class _Record(msgspec.Struct, array_like=True):
    """One `save()`: the hard state if it changed, then the entries to append (possibly replacing a suffix)."""

    hard_state: HardState | None
    entries: tuple[Entry, ...] = ()


class PersistedState(msgspec.Struct, frozen=True):
    """What a node restarts from."""

    hard_state: HardState
    snapshot: Snapshot
    entries: tuple[Entry, ...]  # contiguous, starting at snapshot.index + 1


_encode_record = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(_Record).decode
_encode_snapshot = msgspec.msgpack.Encoder().encode
_decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode


def frame(payload: bytes) -> bytes:
    """Prefix a payload with its length and CRC so a reader can tell a whole record from a torn one."""
    return _HEADER.pack(len(payload), zlib.crc32(payload)) + payload


def read_frames(data: bytes) -> tuple[list[bytes], int]:
    """Split `data` into whole, CRC-valid payloads; also return where the valid prefix ends."""
    payloads: list[bytes] = []
    pos = 0
    while pos + _HEADER.size <= len(data):
        length, crc = _HEADER.unpack_from(data, pos)
        end = pos + _HEADER.size + length
        if length > _MAX_RECORD or end > len(data):
            break
        payload = data[pos + _HEADER.size : end]
        if zlib.crc32(payload) != crc:
            break
        payloads.append(payload)
        pos = end
    return payloads, pos


class RaftStorage:
    """The durable state of one Raft node in `directory`. Not thread-safe: one caller at a time.

    `sync=False` skips every fsync; it exists only to measure what durability costs.
    """

    def __init__(self, directory: str | Path, *, sync: bool = True) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self._sync = sync
        self._hard_state = HardState()
        self._synced_vote: tuple[int, int | None] = (0, None)
        self._snapshot = Snapshot()
        self._entries: list[Entry] = []  # the log after the snapshot, kept to rewrite the WAL on compaction
        self._load()
        self._fd = os.open(self.directory / _WAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    # -- reading -------------------------------------------------------------------------------

    def state(self) -> PersistedState:
        return PersistedState(self._hard_state, self._snapshot, tuple(self._entries))

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def last_index(self) -> int:
        return self._entries[-1].index if self._entries else self._snapshot.index

    # -- writing -------------------------------------------------------------------------------

    def will_sync(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> bool:
        """Whether `save` with these arguments will fsync (a caller may then run it off its loop)."""
        if snapshot is not None or entries:
            return True
        return hard_state is not None and (hard_state.term, hard_state.vote) != self._synced_vote

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        """Persist one Ready: a snapshot (if any), then the entries and the hard state, in one write.

        Returns once everything that safety depends on is on disk: entries and a changed term or vote
        are fsynced. A change of the commit index alone is written but not synced, since a node that
        forgets how far it committed relearns it from the leader.
        """
        if snapshot is not None and snapshot.index > self._snapshot.index:
            # A snapshot from the leader replaces the whole log (the entries that follow it, if any,
            # come in this same call).
            self._install(snapshot, keep_matching_suffix=False)
        if hard_state == self._hard_state:
            hard_state = None
        # The leader may re-send entries the snapshot already covers; they are not needed.
        entries = tuple(e for e in entries if e.index > self._snapshot.index)
        if hard_state is None and not entries:
            return
        os.write(self._fd, frame(_encode_record(_Record(hard_state, entries))))
        if entries:
            _splice(self._entries, self._snapshot.index + 1, entries)
        if hard_state is not None:
            self._hard_state = hard_state
        vote = (self._hard_state.term, self._hard_state.vote)
        if entries or vote != self._synced_vote:
            self._fdatasync(self._fd)
            self._synced_vote = vote

    def compact(self, snapshot: Snapshot) -> None:
        """Make this node's own `snapshot` (of applied entries) the durable base and drop what it covers."""
        if snapshot.index > self._snapshot.index:
            self._install(snapshot, keep_matching_suffix=True)

    def _install(self, snapshot: Snapshot, *, keep_matching_suffix: bool) -> None:
        self._replace_file(_SNAPSHOT, frame(_encode_snapshot(snapshot)))
        self._snapshot = snapshot
        self._entries = _entries_after(self._entries, snapshot) if keep_matching_suffix else []
        if self._hard_state.commit < snapshot.index:
            self._hard_state = msgspec.structs.replace(self._hard_state, commit=snapshot.index)
        # Rewrite the WAL so it holds only what follows the snapshot; os.replace keeps the swap atomic.
        os.close(self._fd)
        self._replace_file(_WAL, frame(_encode_record(_Record(self._hard_state, tuple(self._entries)))))
        self._fd = os.open(self.directory / _WAL, os.O_WRONLY | os.O_APPEND, 0o644)

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- internals -----------------------------------------------------------------------------

    def _load(self) -> None:
        snap_path = self.directory / _SNAPSHOT
        if snap_path.exists():
            payloads, _ = read_frames(snap_path.read_bytes())
            if len(payloads) != 1:
                raise StorageCorrupt(f"{snap_path} is damaged (it is only ever replaced atomically)")
            self._snapshot = _decode_snapshot(payloads[0])
        wal_path = self.directory / _WAL
        if not wal_path.exists():
            return
        data = wal_path.read_bytes()
        payloads, valid = read_frames(data)
        # Replay the whole WAL before applying the snapshot: a crash between writing an installed
        # snapshot and rewriting the WAL leaves a log that may disagree with it, and only the entry at
        # the snapshot's index tells.
        replayed: list[Entry] = []
        for payload in payloads:
            record = _decode_record(payload)
            if record.entries:
                base = replayed[0].index if replayed else record.entries[0].index
                if record.entries[0].index < base:
                    replayed.clear()
                    base = record.entries[0].index
                _splice(replayed, base, record.entries)
            if record.hard_state is not None:
                self._hard_state = record.hard_state
        if replayed and replayed[0].index > self._snapshot.index + 1:
            raise StorageCorrupt(f"the log starts at {replayed[0].index}, after snapshot {self._snapshot.index}")
        # As in the Raft paper: entries after the snapshot stay only if the log agrees with it there.
        self._entries = _entries_after(replayed, self._snapshot)
        if self._hard_state.commit < self._snapshot.index:
            self._hard_state = msgspec.structs.replace(self._hard_state, commit=self._snapshot.index)
        self._synced_vote = (self._hard_state.term, self._hard_state.vote)
        if valid < len(data):
            # A torn last record (crash mid-write): it was never acknowledged, so cut it off.
            os.truncate(wal_path, valid)
            self._fsync_path(wal_path)

    def _replace_file(self, name: str, content: bytes) -> None:
        tmp = self.directory / (name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, content)
            self._fdatasync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.directory / name)
        self._fsync_path(self.directory)

    def _fdatasync(self, fd: int) -> None:
        if self._sync:
            os.fdatasync(fd)

    def _fsync_path(self, path: Path) -> None:
        if not self._sync:
            return
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _splice(log: list[Entry], base: int, entries: Sequence[Entry]) -> None:
    """Put `entries` into `log` (whose first slot holds index `base`), replacing the suffix they overlap."""
    keep = entries[0].index - base  # entries before the new ones that stay
    if keep > len(log):
        raise StorageCorrupt(f"entry {entries[0].index} would leave a gap after index {base + len(log) - 1}")
    del log[keep:]
    log.extend(entries)


def _entries_after(entries: list[Entry], snapshot: Snapshot) -> list[Entry]:
    """The entries that survive `snapshot`: those after it if the log agrees with it, else none."""
    if not entries or snapshot.index == 0:
        return entries
    pos = snapshot.index - entries[0].index
    if pos < 0:
        return entries  # the log already starts after the snapshot
    if pos >= len(entries) or entries[pos].term != snapshot.term:
        return []
    return entries[pos + 1 :]
