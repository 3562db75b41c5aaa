"""The Raft core's in-memory view of one node's log: a snapshot, the entries around it, how far they are durable.

Indexes start at 1; the snapshot stands for every entry up to and including `snapshot.index` (index 0 with
term 0 is the empty snapshot). The entries are contiguous from `first_index()`, which is at most
`snapshot.index + 1`: those at or before `snapshot.index` are a trailing window that compaction keeps so
a leader can send a follower a little behind entries instead of the whole snapshot. The window holds only
committed, applied entries, and it is accepted only if it reaches `snapshot.index` with the snapshot's
term (by Log Matching every entry before that then agrees with the log the snapshot was taken from).

Tracking `handed_to` (given to the runtime to persist) and `persisted_to` (confirmed durable) lets a
leader count itself towards a commit only for entries it has on disk.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence

from pygmy.raft.messages import Entry, Snapshot


class LogInvariantError(AssertionError):
    """The core was asked to do something Raft forbids, e.g. to truncate a committed entry."""


class RaftLog:
    def __init__(self, snapshot: Snapshot | None = None, entries: Sequence[Entry] = ()) -> None:
        self.snapshot = snapshot or Snapshot()
        self.entries: list[Entry] = list(entries)
        self._check_contiguous()
        self.handed_to = self.last_index()  # entries up to here were given to the runtime to persist
        self.persisted_to = self.last_index()  # ... and up to here the runtime confirmed durable

    def _check_contiguous(self) -> None:
        if not self.entries:
            return
        first, snapshot = self.entries[0].index, self.snapshot
        for offset, entry in enumerate(self.entries):
            if entry.index != first + offset:
                raise LogInvariantError(f"log not contiguous: {entry.index} after {first + offset - 1}")
        if first > snapshot.index + 1:
            raise LogInvariantError(f"log starts at {first}, leaving a gap after snapshot {snapshot.index}")
        if first <= snapshot.index and self.term_at(snapshot.index) != self._held_term(snapshot.index):
            raise LogInvariantError(f"entries before snapshot {snapshot.index} do not reach it with its term")

    def _held_term(self, index: int) -> int | None:
        """The term of the entry the log holds at `index` (ignoring the snapshot)."""
        first = self.first_index()
        if first <= index <= self.last_index():
            return self.entries[index - first].term
        return None

    # -- reading --------------------------------------------------------------------------------------

    def first_index(self) -> int:
        """The first index whose entry the log holds (the trailing window included)."""
        return self.entries[0].index if self.entries else self.snapshot.index + 1

    def last_index(self) -> int:
        return self.entries[-1].index if self.entries else self.snapshot.index

    def last_term(self) -> int:
        return self.entries[-1].term if self.entries else self.snapshot.term

    def term_at(self, index: int) -> int | None:
        """The term at `index`; None if the entry is compacted away (and outside the window) or beyond the end."""
        if index == self.snapshot.index:
            return self.snapshot.term
        return self._held_term(index)

    def entry(self, index: int) -> Entry:
        return self.entries[index - self.first_index()]

    def slice(self, lo: int, hi: int) -> list[Entry]:
        """Entries lo..hi inclusive (clamped to what the log holds)."""
        first = self.first_index()
        return self.entries[max(lo, first) - first : max(hi + 1 - first, 0)]

    def is_up_to_date(self, last_term: int, last_index: int) -> bool:
        """Is a log ending at (last_term, last_index) at least as up to date as this one? (Raft §5.4.1)"""
        return (last_term, last_index) >= (self.last_term(), self.last_index())

    def last_index_of_term(self, term: int) -> int | None:
        """The last index holding `term`, if this log has any such entry (terms never decrease along a log)."""
        pos = bisect_right(self.entries, term, key=lambda e: e.term)
        if pos > 0 and self.entries[pos - 1].term == term:
            return self.entries[pos - 1].index
        if pos == 0 and self.snapshot.term == term and self.snapshot.index > 0:
            return self.snapshot.index
        return None

    def first_index_of_term_at(self, index: int) -> int:
        """Where the run of entries with the term at `index` starts, after the snapshot (conflict hint).

        Entries the snapshot stands for are committed, so they match the leader's: the hint never points there.
        """
        term = self.term_at(index)
        first = index
        while first - 1 > self.snapshot.index and self.term_at(first - 1) == term:
            first -= 1
        return first

    def unpersisted(self) -> list[Entry]:
        """Entries not yet handed to the runtime."""
        return self.slice(self.handed_to + 1, self.last_index())

    # -- changing --------------------------------------------------------------------------------------

    def append(self, entries: Sequence[Entry]) -> None:
        if entries and entries[0].index != self.last_index() + 1:
            raise LogInvariantError(f"append at {entries[0].index} after {self.last_index()}")
        self.entries.extend(entries)

    def merge(self, entries: Sequence[Entry], commit: int) -> None:
        """Follower side of AppendEntries, after the previous entry matched.

        Deletes from the first entry whose term conflicts and appends the rest. Entries that match are kept,
        so a stale, shorter AppendEntries never truncates anything.
        """
        for pos, entry in enumerate(entries):
            existing = self.term_at(entry.index)
            if existing is None and entry.index <= self.snapshot.index:
                continue  # compacted, hence committed, hence it matches
            if existing == entry.term:
                continue
            if entry.index <= commit:
                raise LogInvariantError(f"would truncate committed entry {entry.index} (commit {commit})")
            self.truncate_from(entry.index)
            self.append(entries[pos:])
            return

    def truncate_from(self, index: int) -> None:
        """Drop entries at `index` and after (never the snapshot or the window before it)."""
        if index <= self.snapshot.index:
            raise LogInvariantError(f"would truncate from {index}, within snapshot {self.snapshot.index}")
        del self.entries[index - self.first_index() :]
        self.handed_to = min(self.handed_to, index - 1)
        self.persisted_to = min(self.persisted_to, index - 1)

    def compact(self, snapshot: Snapshot, keep: int = 0) -> None:
        """Let `snapshot` stand for the log up to its index; keep the `keep` entries up to it as the window.

        Entries before the window are dropped (older window entries too). `keep=0` keeps none.
        """
        if snapshot.index <= self.snapshot.index:
            return
        if snapshot.index > self.last_index():
            raise LogInvariantError(f"compact to {snapshot.index} beyond last index {self.last_index()}")
        if self._held_term(snapshot.index) != snapshot.term:
            raise LogInvariantError(f"snapshot at {snapshot.index} of term {snapshot.term} disagrees with the log")
        keep_from = max(self.first_index(), snapshot.index + 1 - keep)
        del self.entries[: keep_from - self.first_index()]
        self.snapshot = snapshot

    def restore(self, snapshot: Snapshot) -> None:
        """Replace the whole log with a snapshot received from the leader."""
        self.snapshot = snapshot
        self.entries = []
        self.handed_to = snapshot.index
        self.persisted_to = snapshot.index

    def mark_persisted(self, last: Entry) -> None:
        """The runtime made entries up to `last` durable; count them only if the log still holds that entry."""
        if self.term_at(last.index) == last.term:
            self.persisted_to = max(self.persisted_to, last.index)
