"""Known Raft mistakes, planted in subclasses of the shipped code so the simulator can show it catches them.

`pygmy sim --bug NAME` runs the cluster with the mistake; without bugs the simulator runs `RaftCore` and
`ReadyDriver` themselves. Each mistake overrides the one decision it gets wrong, so the shipped code carries
no switch for it. Core mistakes live in `BuggyRaftCore`; mistakes in the runtime's ordering are subclasses
of the one Ready driver that the runtime and the simulator share. The test suite asserts that each is
reported within a fixed budget of seeds.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pygmy.raft.core import RaftCore, Ready
from pygmy.raft.driver import ReadyDriver
from pygmy.raft.messages import Entry, HardState, Message, Role

CORE_BUGS = frozenset(
    {"commit_old_term_by_counting", "vote_before_persist", "apply_before_commit", "wiped_member_votes", "skip_term_probe"}
)


class BuggyRaftCore(RaftCore):
    """RaftCore with some of KNOWN_BUGS planted:

    - apply_before_commit: hands out entries for applying as soon as they are in the log, agreed on or not;
    - commit_old_term_by_counting: commits an earlier term's entry once a quorum holds it (Raft Figure 8);
    - vote_before_persist: the grant goes out while the disk keeps the term and vote from before it;
    - wiped_member_votes: a member that lost its disk rejoins as a voter at once (what Raft alone would do);
    - skip_term_probe: a member that lost its disk catches up with the first leader it hears, without first
      learning from a quorum the highest term it may have voted in (that leader may be a deposed one).
    """

    def __init__(self, *args: Any, bugs: Iterable[str], **kwargs: Any) -> None:
        self.bugs = planted_bugs(bugs)
        # vote_before_persist: (term of the grant, what the disk held before it) until the term moves on.
        self._held_back: tuple[int, HardState] | None = None
        super().__init__(*args, **kwargs)
        if "wiped_member_votes" in self.bugs:
            self.catching_up = False
        if "skip_term_probe" in self.bugs:
            self._probed = True

    def _apply_limit(self) -> int:
        if "apply_before_commit" in self.bugs:
            return self.log.last_index()
        return super()._apply_limit()

    def _may_commit_by_counting(self, index: int) -> bool:
        if "commit_old_term_by_counting" in self.bugs:
            return True
        return super()._may_commit_by_counting(index)

    def _grant_vote(self, candidate: int) -> None:
        if "vote_before_persist" in self.bugs:
            self._held_back = (self.term, self._handed_hard_state)
        super()._grant_vote(candidate)

    def _hard_state(self) -> HardState:
        if self._held_back is not None and self._held_back[0] == self.term:
            kept = self._held_back[1]
            return HardState(kept.term, kept.vote, self.commit)
        return super()._hard_state()


def planted_core(*args: Any, bugs: Iterable[str] = (), **kwargs: Any) -> RaftCore:
    """A RaftCore built from RaftCore's arguments: the shipped class itself unless `bugs` names a core bug."""
    if not (planted := planted_bugs(bugs) & CORE_BUGS):
        return RaftCore(*args, **kwargs)
    return BuggyRaftCore(*args, bugs=planted, **kwargs)


def planted_bugs(names: Iterable[str]) -> frozenset[str]:
    """The names as a set, or ValueError naming those that are not known bugs."""
    bugs = frozenset(names)
    if unknown := bugs - KNOWN_BUGS:
        raise ValueError(f"unknown bug(s) {sorted(unknown)}; known: {sorted(KNOWN_BUGS)}")
    return bugs


class _SendBeforePersist(ReadyDriver):
    """Every message leaves before the write: votes and acknowledgements promise what is not on disk yet."""

    def early_messages(self, ready: Ready) -> list[Message]:
        return list(ready.messages)


class _LeaderCountsUnpersisted(ReadyDriver):
    """The leader counts its own new entries towards a commit before its fsync of them is done."""

    def handle(self, ready: Ready) -> bool:
        if ready.entries and self.core.role is Role.LEADER:
            self.core.log.mark_persisted(ready.entries[-1])
        return super().handle(ready)


class _ApplyBeforePersist(ReadyDriver):
    """Committed entries are applied before this replica's own write of them (a durable state machine gets ahead of its log)."""

    def split_committed(self, ready: Ready) -> tuple[list[Entry], list[Entry]]:
        if ready.snapshot is not None:
            return [], ready.committed
        return ready.committed, []


RUNTIME_BUGS: dict[str, type[ReadyDriver]] = {
    "send_before_persist": _SendBeforePersist,
    "leader_counts_unpersisted": _LeaderCountsUnpersisted,
    "apply_before_persist": _ApplyBeforePersist,
}


KNOWN_BUGS = CORE_BUGS | frozenset(RUNTIME_BUGS)


def driver_class(bugs: Iterable[str]) -> type[ReadyDriver]:
    """The driver to run: the shipped one, or the one with the planted runtime bug named in `bugs`."""
    planted = [RUNTIME_BUGS[name] for name in sorted(planted_bugs(bugs)) if name in RUNTIME_BUGS]
    if len(planted) > 1:
        raise ValueError("plant at most one runtime bug at a time")
    return planted[0] if planted else ReadyDriver
