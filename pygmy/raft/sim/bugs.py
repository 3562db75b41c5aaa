"""Known Raft mistakes, planted in a subclass of the shipped core so the simulator can show it catches them.

`pygmy sim --bug NAME` runs the cluster on `BuggyRaftCore`; without bugs the simulator runs `RaftCore`
itself. Each mistake overrides the one decision of the core it gets wrong, so the shipped core carries no
switch for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pygmy.raft.core import RaftCore
from pygmy.raft.messages import HardState

KNOWN_BUGS = frozenset({"commit_old_term_by_counting", "vote_before_persist", "apply_before_commit"})


def planted_bugs(names: Iterable[str]) -> frozenset[str]:
    """The names as a set, or ValueError naming those that are not known bugs."""
    bugs = frozenset(names)
    if unknown := bugs - KNOWN_BUGS:
        raise ValueError(f"unknown bug(s) {sorted(unknown)}; known: {sorted(KNOWN_BUGS)}")
    return bugs


class BuggyRaftCore(RaftCore):
    """RaftCore with some of KNOWN_BUGS planted:

    - apply_before_commit: hands out entries for applying as soon as they are in the log, agreed on or not;
    - commit_old_term_by_counting: commits an earlier term's entry once a quorum holds it (Raft Figure 8);
    - vote_before_persist: the grant goes out while the disk keeps the term and vote from before it.
    """

    def __init__(self, *args: Any, bugs: Iterable[str], **kwargs: Any) -> None:
        self.bugs = planted_bugs(bugs)
        # vote_before_persist: (term of the grant, what the disk held before it) until the term moves on.
        self._held_back: tuple[int, HardState] | None = None
        super().__init__(*args, **kwargs)

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
    """A RaftCore built from RaftCore's arguments: the shipped class itself unless `bugs` names any."""
    if not (planted := planted_bugs(bugs)):
        return RaftCore(*args, **kwargs)
    return BuggyRaftCore(*args, bugs=planted, **kwargs)
