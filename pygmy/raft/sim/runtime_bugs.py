"""Planted mistakes in the runtime's ordering, for showing that the simulation catches them.

Each is a `ReadyDriver` subclass that gets one step of the driver wrong, the way a runtime optimisation
easily could. `pygmy sim --bug NAME` runs the simulation with it; the test suite asserts that each is
reported within a fixed budget of seeds. Nothing here is used outside the simulator.
"""

from __future__ import annotations

from pygmy.raft.core import Ready
from pygmy.raft.driver import ReadyDriver
from pygmy.raft.messages import Entry, Message, Role


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


def driver_class(bugs: frozenset[str]) -> type[ReadyDriver]:
    """The driver to run: the shipped one, or the one with the planted runtime bug named in `bugs`."""
    planted = [RUNTIME_BUGS[name] for name in sorted(bugs) if name in RUNTIME_BUGS]
    if len(planted) > 1:
        raise ValueError("plant at most one runtime bug at a time")
    return planted[0] if planted else ReadyDriver
