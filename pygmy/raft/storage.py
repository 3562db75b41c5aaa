"""Durable Raft state of one node: log entries, hard state (term, vote, commit) and the latest snapshot.

Everything lives in one directory, reached only through a `pygmy.raft.files.Files` (the real disk by
default; the simulator's `MemoryFiles` to crash it anywhere):

- `wal` — an append-only file of records. Each record is one `save()` call (one Ready) that changed the
  log or the term or vote: the hard state, if it changed, and the new entries. A record is

      payload length (u32) | CRC-32 of the payload (u32) | CRC-32 of the 8 bytes before it (u32) | payload

  little-endian, the payload a msgpack array `[hard_state or nil, [entries]]`, never empty. It is
  written with one `write` and made durable with one `fdatasync` before `save()` returns, so all entries
  of a Ready share one sync (group commit) and term and vote always land together. Replaying the
  records rebuilds the log: an entry at index i replaces whatever was at i and after it, which is exactly
  Raft's "delete the conflicting suffix", so truncation needs no record of its own.
- `snapshot` — the latest snapshot, one record in the same framing (payload: msgpack `Snapshot`).

Every record is synced before the next is written, and a change of the commit index alone is kept in
memory until the next record (or `close()`) carries it: a node that forgets how far it committed
relearns it from the leader. So only the last record can be unsynced, and a power loss can damage
only the end of the file: a partial header, a length that runs past the end, a payload whose CRC
fails with nothing after it, zeros where the data never reached the disk. `open` cuts such a torn
tail off. Damage anywhere else — a record that fails its checks while a whole record follows it, a
CRC-valid record that does not decode, a gap in the log — cannot come from a crash: `StorageCorrupt`
names the file and the byte offset, and the file is left as it is. The header's own CRC is what tells
a flipped bit in a length (which could otherwise swallow every record after it as a "torn tail") from
a torn write.

A snapshot, and the WAL when a snapshot rewrites it, are replaced atomically: write a temporary file,
fdatasync, rename, fsync the directory. Saving a snapshot replaces the snapshot file, then the WAL with
one record holding the hard state and only what follows the snapshot: after the node's own snapshot
(`compact`, which reads the WAL back to find those entries) the entries after it, after one installed
from the leader (`save(..., snapshot)`) the entries of that same save. A crash between the two leaves
the new snapshot beside the old WAL; `open` then keeps the entries after the snapshot only if the log
agrees with it there (as in the Raft paper), and finishes the rewrite. Creating a file or a directory
is followed by an fsync of the directory that holds it.

After a failed write or sync nothing more is written: what reached the disk is unknown (a failed fsync
may drop the dirty pages), so the node must reopen and read it back; `open` syncs the WAL and the
directory before trusting what it read.

The log itself is held only by the caller (the core): `state()` returns the entries read at open,
and reads the WAL again if asked later.

Why a file and not SQLite: measured on the target machine (quiet disk), a save of 1 entry costs 136 µs
and of 64 entries 185 µs (one fdatasync each), against 189 and 296 µs for SQLite in WAL mode with
synchronous=FULL; without fsync a save costs 3-35 µs, so the disk sets the price and batching is what
pays. Figures in docs/raft-benchmark.md, reproduced by `python -m benchmarks.raft_bench --micro`.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import msgspec

from pygmy.raft.files import Files, OsFiles
from pygmy.raft.messages import Entry, HardState, Snapshot

_FIELDS = struct.Struct("<II")  # payload length, CRC-32 of the payload
_HEADER = struct.Struct("<III")  # the fields, then the CRC-32 of the fields
_MAX_RECORD = 1 << 30  # no Ready is this large
_WAL = "wal"
_SNAPSHOT = "snapshot"


class StorageCorrupt(Exception):
    """The files hold something a crash cannot explain (a damaged record, a gap in the log, a bad snapshot)."""


class SaveRefused(StorageCorrupt):
    """A save that would leave the files in a state a restart must refuse (a gap, the term going back).

    Nothing of it was written. A subclass of StorageCorrupt so callers that stop on either keep working.
    """


class _Record(msgspec.Struct, array_like=True):
    """One `save()`: the hard state if it changed, then the entries to append (possibly replacing a suffix)."""

    hard_state: HardState | None
    entries: tuple[Entry, ...] = ()


class PersistedState(msgspec.Struct, frozen=True):
    """What a node restarts from."""

    hard_state: HardState
    snapshot: Snapshot
    entries: tuple[Entry, ...]  # contiguous, starting at snapshot.index + 1


_encode = msgspec.msgpack.Encoder().encode
_decode_record = msgspec.msgpack.Decoder(_Record).decode
_decode_snapshot = msgspec.msgpack.Decoder(Snapshot).decode


def frame(payload: bytes) -> bytes:
    """Prefix a payload with its length and CRC, and those with their own CRC (see the module docstring)."""
    fields = _FIELDS.pack(len(payload), zlib.crc32(payload))
    return fields + struct.pack("<I", zlib.crc32(fields)) + payload


def read_frames(data: bytes, path: Path) -> tuple[list[tuple[int, bytes]], int]:
    """The whole records at the start of `data` (offset, payload) and where they end.

    What follows them is a torn tail (see the module docstring); damage with a whole record after it
    raises StorageCorrupt.
    """
    records: list[tuple[int, bytes]] = []
    pos = 0
    while pos < len(data):
        end, damage = _check_record(data, pos)
        if damage is None:
            records.append((pos, data[pos + _HEADER.size : end]))
            pos = end
        elif _is_torn(data, pos, end):
            break
        else:
            raise StorageCorrupt(
                f"{path}: {damage} at byte {pos} of {len(data)}, with more records after it; a crash cannot "
                f"cause that, so the file is left untouched"
            )
    return records, pos


def _check_record(data: bytes, pos: int) -> tuple[int, str | None]:
    """Where the record at `pos` ends (-1 if unknown) and what is wrong with it, if anything."""
    if len(data) - pos < _HEADER.size:
        return -1, "a partial header"
    length, crc, fields_crc = _HEADER.unpack_from(data, pos)
    if zlib.crc32(data[pos : pos + _FIELDS.size]) != fields_crc:
        return -1, "a damaged record header"
    if length == 0 or length > _MAX_RECORD:
        return -1, f"a record of impossible length {length}"
    end = pos + _HEADER.size + length
    if end > len(data):
        return end, "a record that runs past the end of the file"
    if zlib.crc32(data[pos + _HEADER.size : end]) != crc:
        return end, "a record whose checksum fails"
    return end, None


def _is_torn(data: bytes, pos: int, end: int) -> bool:
    """Whether the damaged record at `pos` (ending at `end`, or -1 if its header is unreadable) is a torn tail."""
    if end >= len(data):  # a valid header: it was the last record, cut short or its payload half written
        return True
    if end >= 0:  # a valid header, a bad payload, and more data after it
        return False
    if data.count(0, pos) == len(data) - pos:  # the file grew, the data never reached the disk
        return True
    # An unreadable header: torn only if no whole record follows anywhere (a torn write can leave any
    # mix of its bytes and zeros, but nothing after it). Damage with a whole record after it is not a crash.
    return not any(_check_record(data, p)[1] is None for p in range(pos + 1, len(data) - _HEADER.size + 1))


class RaftStorage:
    """The durable state of one Raft node in `directory`. Not thread-safe: one caller at a time.

    `files` is the file system (the real one by default). `sync=False` skips every fsync; it exists only
    to measure what durability costs, and gives up the guarantees above.
    """

    def __init__(self, directory: str | Path, *, sync: bool = True, files: Files | None = None) -> None:
        self.directory = Path(directory)
        self._files: Files = files if files is not None else OsFiles()
        self._sync = sync
        self._failed: BaseException | None = None
        self._hard_state = HardState()  # the latest, possibly ahead of the WAL in its commit index only
        self._written = HardState()  # the latest the WAL holds
        self._snapshot = Snapshot()
        self._last_index = 0
        self._handle = -1
        self._entries_at_open: tuple[Entry, ...] | None = None  # until state() hands them over
        self._make_directory(self.directory)
        self._load()

    # -- reading -------------------------------------------------------------------------------

    def state(self) -> PersistedState:
        entries = self._entries_at_open
        self._entries_at_open = None
        if entries is None:
            entries = tuple(self._read_log()[1])
        return PersistedState(self._hard_state, self._snapshot, entries)

    @property
    def hard_state(self) -> HardState:
        return self._hard_state

    @property
    def last_index(self) -> int:
        return self._last_index

    # -- writing -------------------------------------------------------------------------------

    def will_sync(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> bool:
        """Whether `save` with these arguments will fsync (a caller may then run it off its loop)."""
        if snapshot is not None or entries:
            return True
        return hard_state is not None and _vote(hard_state) != _vote(self._hard_state)

    def save(self, hard_state: HardState | None, entries: Sequence[Entry], snapshot: Snapshot | None = None) -> None:
        """Persist one Ready: a snapshot (if any), then the entries and the hard state.

        Returns once everything that safety depends on is on disk: entries and a changed term or vote
        are fsynced. A change of the commit index alone is only remembered, and written with the next
        record. Raises SaveRefused, having written nothing, for a save that would break the log.
        """
        self._check_usable()
        new_hard_state = self._hard_state if hard_state is None else hard_state
        _check_hard_state(self._hard_state, new_hard_state)
        if snapshot is not None and snapshot.index > self._snapshot.index:
            self._install(snapshot, new_hard_state, entries)
            return
        # The leader may re-send entries the snapshot already covers; they are not needed.
        entries = tuple(e for e in entries if e.index > self._snapshot.index)
        _check_entries(entries, self._last_index)
        if not entries and _vote(new_hard_state) == _vote(self._written):
            self._hard_state = new_hard_state
            return
        record = _Record(None if new_hard_state == self._written else new_hard_state, entries)
        with self._writing():
            self._files.write(self._handle, frame(_encode(record)))
            self._fdatasync(self._handle)
        self._hard_state = self._written = new_hard_state
        if entries:
            self._last_index = entries[-1].index
            self._entries_at_open = None

    def compact(self, snapshot: Snapshot) -> None:
        """Make this node's own `snapshot` (of applied entries) the durable base and drop what it covers."""
        if snapshot.index <= self._snapshot.index:
            return
        self._check_usable()
        # The entries after the snapshot are on disk only; compaction is rare enough to read them back.
        kept = _entries_after(self._read_log()[1], snapshot)
        self._replace_snapshot_and_wal(snapshot, _with_commit(self._hard_state, snapshot.index), tuple(kept))

    def close(self) -> None:
        if self._handle < 0:
            return
        if self._failed is None and self._hard_state != self._written:
            with self._writing():  # the commit index kept in memory only, so a clean restart knows it
                self._files.write(self._handle, frame(_encode(_Record(self._hard_state))))
                self._fdatasync(self._handle)
            self._written = self._hard_state
        self._files.close(self._handle)
        self._handle = -1

    # -- internals -----------------------------------------------------------------------------

    def _install(self, snapshot: Snapshot, hard_state: HardState, entries: Sequence[Entry]) -> None:
        """A snapshot from the leader replaces the whole log; the entries that follow it come in the same save."""
        kept = tuple(e for e in entries if e.index > snapshot.index)
        _check_entries(kept, snapshot.index)
        self._replace_snapshot_and_wal(snapshot, _with_commit(hard_state, snapshot.index), kept)

    def _replace_snapshot_and_wal(self, snapshot: Snapshot, hard_state: HardState, entries: tuple[Entry, ...]) -> None:
        with self._writing():
            self.replace_file(_SNAPSHOT, frame(_encode(snapshot)))
            self._files.close(self._handle)
            self._handle = -1
            self.replace_file(_WAL, frame(_encode(_Record(hard_state, entries))))
            self._handle = self._files.open_append(self.directory / _WAL)
        self._snapshot = snapshot
        self._hard_state = self._written = hard_state
        self._last_index = entries[-1].index if entries else snapshot.index
        self._entries_at_open = None

    def _load(self) -> None:
        snapshot_path = self.directory / _SNAPSHOT
        if self._files.exists(snapshot_path):
            self._snapshot = _read_snapshot(snapshot_path, self._files.read(snapshot_path))
        wal_path = self.directory / _WAL
        if not self._files.exists(wal_path):
            self._handle = self._files.create(wal_path)
            self._fsync_dir(self.directory)  # else a power loss may forget the file, and all saved in it
            return
        hard_state, entries, valid, size, stale = self._read_log()
        self._hard_state = self._written = _with_commit(hard_state, self._snapshot.index)
        self._last_index = entries[-1].index if entries else self._snapshot.index
        self._entries_at_open = tuple(entries)
        if stale:
            # A crash came between replacing the snapshot and rewriting the WAL: finish the rewrite, or
            # new records would follow entries the snapshot replaced (and read back as a gap). The new
            # file holds no torn tail either.
            with self._writing():
                self.replace_file(_WAL, frame(_encode(_Record(self._hard_state, self._entries_at_open))))
        self._handle = self._files.open_append(wal_path)
        with self._writing():
            if valid < size and not stale:
                # A torn last record (a crash mid-write): it was never acknowledged, so cut it off.
                self._files.truncate(self._handle, valid)
            # What was read may not be durable yet (the previous run's last sync may have failed):
            # make it so before the node acts on it.
            self._fdatasync(self._handle)
            self._fsync_dir(self.directory)

    def _read_log(self) -> tuple[HardState, list[Entry], int, int, bool]:
        """Replay the WAL: the hard state, the entries after the snapshot, where the whole records end, the
        size, and whether the WAL still holds entries the snapshot covers."""
        path = self.directory / _WAL
        data = self._files.read(path)
        records, valid = read_frames(data, path)
        # Replay the whole WAL before applying the snapshot: a crash between writing a snapshot and
        # rewriting the WAL leaves a log that may disagree with it, and only the entry at the snapshot's
        # index tells.
        hard_state = HardState()
        replayed: list[Entry] = []
        for offset, payload in records:
            try:
                record = _decode_record(payload)
            except msgspec.DecodeError as exc:
                raise StorageCorrupt(
                    f"{path}: the record at byte {offset} has a valid checksum but does not decode: {exc}"
                ) from exc
            if record.entries:
                try:
                    _check_entries(record.entries, replayed[-1].index if replayed else record.entries[0].index - 1)
                except SaveRefused as exc:
                    raise StorageCorrupt(f"{path}: the record at byte {offset}: {exc}") from exc
                base = replayed[0].index if replayed else record.entries[0].index
                if record.entries[0].index < base:
                    replayed.clear()
                    base = record.entries[0].index
                del replayed[record.entries[0].index - base :]
                replayed.extend(record.entries)
            if record.hard_state is not None:
                hard_state = record.hard_state
        if replayed and replayed[0].index > self._snapshot.index + 1:
            raise StorageCorrupt(
                f"{path}: the log starts at {replayed[0].index}, after snapshot {self._snapshot.index}"
            )
        # As in the Raft paper: entries after the snapshot stay only if the log agrees with it there.
        stale = bool(replayed) and replayed[0].index <= self._snapshot.index
        return hard_state, _entries_after(replayed, self._snapshot), valid, len(data), stale

    def replace_file(self, name: str, content: bytes) -> None:
        """Write `content` as the file `name` in this directory, atomically and durably (for small files)."""
        temporary = self.directory / (name + ".tmp")
        handle = self._files.create(temporary)
        try:
            self._files.write(handle, content)
            self._fdatasync(handle)
        finally:
            self._files.close(handle)
        self._files.rename(temporary, self.directory / name)
        self._fsync_dir(self.directory)

    def read_file(self, name: str) -> bytes | None:
        """The content of the file `name` in this directory, or None if there is none."""
        path = self.directory / name
        return self._files.read(path) if self._files.exists(path) else None

    def _make_directory(self, path: Path) -> None:
        if self._files.exists(path):
            return
        self._make_directory(path.parent)
        self._files.mkdir(path)
        self._fsync_dir(path.parent)  # else a power loss may forget the directory and all in it

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Refuse every later write if this one fails: what reached the disk is then unknown."""
        try:
            yield
        except BaseException as exc:
            self._failed = exc
            raise

    def _check_usable(self) -> None:
        if self._failed is not None:
            raise OSError(f"{self.directory}: an earlier write or sync failed; reopen the storage") from self._failed

    def _fdatasync(self, handle: int) -> None:
        if self._sync:
            self._files.fdatasync(handle)

    def _fsync_dir(self, path: Path) -> None:
        if self._sync:
            self._files.fsync_dir(path)


def _read_snapshot(path: Path, data: bytes) -> Snapshot:
    try:
        records, valid = read_frames(data, path)
    except StorageCorrupt:
        records, valid = [], 0
    if len(records) != 1 or valid != len(data):
        raise StorageCorrupt(f"{path} is damaged (it is only ever replaced whole, so a crash cannot explain it)")
    try:
        return _decode_snapshot(records[0][1])
    except msgspec.DecodeError as exc:
        raise StorageCorrupt(f"{path} has a valid checksum but does not decode: {exc}") from exc


def _vote(hard_state: HardState) -> tuple[int, int | None, bool, int]:
    """What must be synced before anyone hears of it: term, vote and the catching-up mark (not the commit)."""
    return hard_state.promises()


def _check_hard_state(old: HardState, new: HardState) -> None:
    """Refuse a term that goes back, or a vote changed within a term: either would let a node vote twice."""
    if new.term < old.term:
        raise SaveRefused(f"term {new.term} is below the saved term {old.term}")
    if new.term == old.term and old.vote is not None and new.vote != old.vote:
        raise SaveRefused(f"term {new.term}: the vote for {old.vote} cannot become {new.vote}")


def _check_entries(entries: Sequence[Entry], last_index: int) -> None:
    """Refuse entries that are not consecutive or would leave a gap after the log ending at `last_index`."""
    if not entries:
        return
    first = entries[0].index
    if first > last_index + 1:
        raise SaveRefused(f"entry {first} would leave a gap after index {last_index}")
    for offset, entry in enumerate(entries):
        if entry.index != first + offset:
            raise SaveRefused(f"entries are not consecutive: {entry.index} follows {first + offset - 1}")


def _with_commit(hard_state: HardState, snapshot_index: int) -> HardState:
    """A snapshot holds only committed entries, so the commit index is at least its index."""
    if hard_state.commit >= snapshot_index:
        return hard_state
    return msgspec.structs.replace(hard_state, commit=snapshot_index)


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
