"""Raft's safety properties (Figure 3 of the paper), checked after every simulated step.

Each check is incremental so it can run after every event:
- Election Safety: at most one leader per term.
- Log Matching: two entries with the same index and term are identical and follow the same term — by
  induction, the logs are identical up to there. Checked on what reaches a disk.
- Leader Completeness: a newly elected leader holds every entry committed in earlier terms; and, checked when a
  leader commits, every node missing the entry has a log that no quorum would vote for (Raft §5.4.3's
  argument, so a Figure 8 mistake shows even before another leader is elected).
- State Machine Safety: no two nodes apply different entries at one index.
Plus: a node's commit index never decreases while it runs, and each node applies indexes in order.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pygmy.raft.core import Ready
from pygmy.raft.messages import Entry, Role, Snapshot

if TYPE_CHECKING:
    from pygmy.raft.sim.node import SimNode


class Violation(Exception):
    """A safety or liveness property failed; the message says which and where."""


class SafetyChecker:
    def __init__(self) -> None:
        self.leaders: dict[int, int] = {}  # term -> the node that led it
        self.entries: dict[tuple[int, int], tuple[int, bytes]] = {}  # (index, term) -> (previous term, data)
        self.committed: dict[int, int] = {}  # index -> term, from every node's commit index
        self.committed_in: dict[int, int] = {}  # index -> the term of the leader that committed it
        self.applied: dict[int, tuple[int, bytes]] = {}  # index -> (term, data), from every node's state machine
        self.snapshots: dict[int, bytes] = {}  # index -> state machine snapshot taken or installed there
        self._seen: dict[int, tuple[int, Role, int, int]] = {}  # node -> (incarnation, role, term, commit)

    def after_event(self, nodes: list[SimNode]) -> None:
        self.nodes = nodes
        self.quorum = len(nodes) // 2 + 1
        for node in nodes:
            core = node.core
            if core is None:
                continue
            before = self._seen.get(node.id)
            now = (node.incarnation, core.role, core.term, core.commit)
            if before == now:
                continue
            self._seen[node.id] = now
            fresh = before is None or before[0] != node.incarnation
            if not fresh and core.commit < before[3]:
                raise Violation(f"commit index of node {node.id} went back from {before[3]} to {core.commit}")
            self._record_commits(node, 0 if fresh else before[3])
            if core.role is Role.LEADER and (fresh or before[1] is not Role.LEADER or before[2] != core.term):
                self._new_leader(node)

    def _record_commits(self, node: SimNode, since: int) -> None:
        core = node.core
        assert core is not None
        for index in range(max(since, core.log.snapshot.index) + 1, core.commit + 1):
            term = core.term_at(index)
            assert term is not None
            known = self.committed.setdefault(index, term)
            self.committed_in.setdefault(index, core.term)  # a leader records its commits before anyone learns them
            if known != term:
                raise Violation(
                    f"State Machine Safety: node {node.id} committed term {term} at index {index}, "
                    f"another node committed term {known} there"
                )
            if core.role is Role.LEADER:
                self._check_electable_without(node, index, term)

    def _check_electable_without(self, leader: SimNode, index: int, term: int) -> None:
        """No node lacking a just-committed entry may have a log that a quorum of logs would vote for."""
        # A member catching up after losing its disk neither stands nor votes.
        disks = [node.disk for node in self.nodes if not node.disk.hard_state.catching_up]
        for candidate in self.nodes:
            disk = candidate.disk
            if disk.hard_state.catching_up or index <= disk.snapshot.index or disk.term_at(index) == term:
                continue
            mine = (disk.last_term(), disk.last_index)
            electors = sum(1 for other in disks if (other.last_term(), other.last_index) <= mine)
            if electors >= self.quorum:
                raise Violation(
                    f"Leader Completeness: node {leader.id} committed entry {index} of term {term}, but node "
                    f"{candidate.id} lacks it and {electors} of {len(disks)} logs would vote for it"
                )

    def _new_leader(self, node: SimNode) -> None:
        core = node.core
        assert core is not None
        other = self.leaders.setdefault(core.term, node.id)
        if other != node.id:
            raise Violation(f"Election Safety: nodes {other} and {node.id} both lead term {core.term}")
        for index, term in self.committed.items():
            if self.committed_in[index] >= core.term:
                continue  # committed in this term or later: a late-elected leader of an old term need not hold it
            if index > core.log.snapshot.index and core.term_at(index) != term:
                raise Violation(
                    f"Leader Completeness: node {node.id}, leader of term {core.term}, lacks committed entry "
                    f"{index} of term {term} (has term {core.term_at(index)})"
                )

    def on_persist(self, node: SimNode, ready: Ready) -> None:
        disk = node.disk
        for entry in ready.entries:
            previous = disk.term_at(entry.index - 1)
            fact = (-1 if previous is None else previous, entry.data)  # -1: right after a snapshot, unknown
            known = self.entries.get((entry.index, entry.term))
            if known is not None:
                if known[1] != fact[1] or (known[0] != fact[0] and -1 not in (known[0], fact[0])):
                    raise Violation(
                        f"Log Matching: node {node.id} stored entry {entry.index} of term {entry.term} "
                        f"after term {fact[0]}, another node after term {known[0]} (or with other data)"
                    )
                if known[0] != -1:
                    continue
            self.entries[(entry.index, entry.term)] = fact

    def on_apply(self, node: SimNode, entry: Entry) -> None:
        if entry.index != node.applied + 1:
            raise Violation(f"node {node.id} applied entry {entry.index} right after {node.applied}")
        fact = (entry.term, entry.data)
        known = self.applied.setdefault(entry.index, fact)
        if known != fact:
            raise Violation(
                f"State Machine Safety: node {node.id} applied term {entry.term} at index {entry.index}, "
                f"another node applied term {known[0]} there"
            )

    def on_snapshot(self, node: SimNode, snapshot: Snapshot) -> None:
        """A node snapshotted its state machine, or installed a snapshot: same index, same state everywhere."""
        known = self.committed.get(snapshot.index)
        if known is not None and known != snapshot.term:
            raise Violation(f"node {node.id} has a snapshot at {snapshot.index} of term {snapshot.term}, committed term {known}")
        state = self.snapshots.setdefault(snapshot.index, snapshot.data)
        if state != snapshot.data:
            raise Violation(f"State Machine Safety: node {node.id}'s state at index {snapshot.index} differs from another's")
