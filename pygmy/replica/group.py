"""One replica of a backend tier: its `RaftGroup`, how to reach the group's leader, and reads at a chosen level.

A backend node (catalog or order) runs one `Replica`. Writes go through the group's log on the leader; a
follower hands them on (`pygmy.replica.http` forwards the HTTP request) so that a caller may ask any replica.
Reads come at one of the levels of `pygmy.replica.reads`: linearizable by default, served by this replica
after it has applied what the leader confirmed (the Raft thesis's follower read, §6.4), or cheaper when the
caller says how stale an answer may be.

Commands and queries are JSON objects; the state machine answers JSON. Every query answer carries the log
index the state was read at (`index`), so a caller (the frontend's cache) knows how fresh it is.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from typing import Any

import orjson

from pygmy.common.tls import contexts
from pygmy.config import Config, Node
from pygmy.raft.core import Status
from pygmy.raft.messages import Role
from pygmy.raft.node import NotLeader, ProposalDropped, RaftGroup, ReadTimeout
from pygmy.replica import metrics
from pygmy.replica.machine import TierMachine

log = logging.getLogger(__name__)

LEADER_WAIT = 3.0  # seconds a request waits for a leader to be elected before it is refused with a 503


class NoLeader(Exception):
    """The group has no leader this replica knows of, even after waiting: the caller answers 503."""


class Replica:
    """This process's member of its tier's Raft group, with the state machine `machine` (on SQLite)."""

    def __init__(self, config: Config, node: Node, machine: TierMachine, *, join: bool = False) -> None:
        self.config = config
        self.node = node
        self.machine = machine
        members = config.of_kind(node.kind)
        self.urls = {n.id: n.url for n in members}
        self.names = {n.id: n.name for n in members}
        peers = {n.id: (n.host, _raft_port(n)) for n in members}
        cluster = config.cluster_id or "pygmy"
        self.group = RaftGroup(
            node.id, peers, config.node_dir(node) / "raft", config.cluster_secret, machine,
            dataclasses.replace(config.raft.group_options(), tls=contexts(config), listen_host=config.bind_host),
            join=join, cluster_id=f"{cluster}/{node.kind}",
        )
        self.started = time.time()
        # Fresh at every start, so a frontend's heartbeat sees that this replica crashed and came back.
        self.boot_id = os.urandom(8).hex()
        self._watch: asyncio.Task[None] | None = None
        metrics.watch(self)

    async def start(self) -> None:
        await self.group.start()
        self._watch = asyncio.create_task(self._log_changes())

    async def stop(self) -> None:
        """Hand leadership to a caught-up follower first, so a rolling restart pauses no writes."""
        if self.is_leader():
            await self.hand_over()
        if self._watch is not None:
            self._watch.cancel()
        await self.group.stop()
        self.machine.close()

    # -- who leads ---------------------------------------------------------------------------------

    def status(self) -> Status:
        return self.group.status()

    def is_leader(self) -> bool:
        return self.group.failure is None and self.status().role == Role.LEADER

    def leader_url(self) -> str | None:
        leader = self.status().leader
        return None if leader is None else self.urls.get(leader)

    async def wait_for_leader(self, timeout: float = LEADER_WAIT) -> int:
        """The leader's id once one is known (elections take a few hundred ms); NoLeader after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            if self.group.failure is not None:
                raise NoLeader(f"{self.node.name} stopped: {self.group.failure}")
            leader = self.status().leader
            if leader is not None:
                return leader
            if time.monotonic() >= deadline:
                raise NoLeader(f"the {self.node.kind} group has no leader")
            await asyncio.sleep(0.02)

    # -- writes and reads on the leader -----------------------------------------------------------

    async def propose(self, command: dict[str, Any]) -> dict[str, Any]:
        """Apply `command` through the log (this replica must lead). NotLeader / ProposalDropped pass up."""
        try:
            result: dict[str, Any] = orjson.loads(await self.group.propose(orjson.dumps(command)))
        except Exception:
            metrics.proposal(self, "failed")
            raise
        metrics.proposal(self, "committed")
        return result

    async def read_linearizable(self, query: dict[str, Any]) -> dict[str, Any]:
        """ReadIndex on the leader: answered from state that holds every write acknowledged before it."""
        result: dict[str, Any] = orjson.loads(await self.group.read(orjson.dumps(query)))
        return result

    def read_local(self, query: dict[str, Any]) -> dict[str, Any]:
        """This replica's state as it is now (its applied index is in the answer)."""
        result: dict[str, Any] = orjson.loads(self.machine.query(orjson.dumps(query)))
        return result

    async def wait_applied(self, index: int, timeout: float) -> bool:
        """Until this replica has applied `index` (True) or `timeout` passes (False)."""
        if self.machine.applied_index >= index:
            return True
        waiter = self.machine.applied_at_least(index)
        try:
            async with asyncio.timeout(timeout):  # not wait_for: it can swallow a cancellation on 3.11
                await waiter
        except asyncio.TimeoutError:
            return False
        return True

    # -- operator views ----------------------------------------------------------------------------

    def status_document(self, restarts: int) -> dict[str, Any]:
        """This replica's entry in the status document (docs/contracts.md)."""
        status = self.status()
        failed = self.group.failure is not None
        contact = self.group.last_contact()
        return {
            "kind": self.node.kind,
            "id": self.node.id,
            "name": self.node.name,
            "url": self.node.url,
            "status": "failed" if failed else "up",
            "role": _role(status, failed),
            "term": status.term,
            "leader": None if status.leader is None else self.names.get(status.leader),
            "commit": status.commit,
            "applied": self.machine.applied_index,
            "last_index": status.last_index,
            "snapshot_index": status.snapshot_index,
            "last_contact": None if contact is None else round(contact, 3),
            "restarts": restarts,
            "started": self.started,
            "boot_id": self.boot_id,
            "pid": os.getpid(),
        }

    async def hand_over(self) -> str | None:
        """Hand leadership to a caught-up follower; the new leader's name, or None if none took it."""
        status = self.status()
        followers = [i for i in self.urls if i != self.node.id]
        # The core picks whom to send TimeoutNow to only once the target's log matches; any follower will do.
        for target in followers:
            try:
                await self.group.transfer_leadership(target, timeout=1.0)
                log.info("%s handed leadership to %s in term %d", self.node.name, self.names[target], status.term)
                return self.names[target]
            except (TimeoutError, NotLeader, ValueError) as exc:
                log.warning("%s could not hand leadership to %s: %s", self.node.name, self.names[target], exc)
        return None

    async def _log_changes(self) -> None:
        """Log elections and leader changes as sentences an operator can read."""
        last: tuple[Role, int, int | None] | None = None
        known: int | None = None  # the last leader seen: an election's leaderless moment is no change; the first leader is
        while True:
            status = self.status()
            now = (status.role, status.term, status.leader)
            if now != last:
                if status.leader is not None and status.leader != known:
                    metrics.leader_changed(self)
                known = status.leader if status.leader is not None else known
                if status.role == Role.LEADER:
                    log.info("%s elected leader in term %d", self.node.name, status.term)
                elif status.leader is not None and (last is None or last[2] != status.leader):
                    log.info("%s follows %s in term %d", self.node.name, self.names.get(status.leader), status.term)
                last = now
            await asyncio.sleep(0.05)


def _role(status: Status, failed: bool) -> str:
    if failed:
        return "failed"
    if status.catching_up:
        return "catching-up"
    return status.role.value


def _raft_port(node: Node) -> int:
    if node.raft_port is None:
        raise ValueError(f"{node.name} has no raft_port in the configuration")
    return node.raft_port


__all__ = ["NoLeader", "NotLeader", "ProposalDropped", "ReadTimeout", "Replica"]
