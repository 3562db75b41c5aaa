"""`pygmy backup` and `pygmy restore`: one file holding both groups' state, consistent across the two, and
a new cluster made from it.

Consistency across the groups, without pausing buys. Each group's dump (`GET /internal/dump`) is its
state machine's snapshot at a committed index taken after a ReadIndex, so it is a real state of that group
holding every acknowledged write. Across the groups, the only link is the buy: the catalog takes a copy
only for an order that is *pending* (between `begin` and `settle`), and a request of a settled order never
applies later (the catalog stores its result or records it aborted). So the backup takes

    order dump O1, then the catalog dump C, then order dump O2

and keeps (O2, C) only if O1 and O2 are the same bytes and hold no pending order: then no order began or
settled while C was taken (orders are never deleted), no copy was in flight, and the pair is a state the
cluster was in. Otherwise it waits for pending orders to settle and tries again. A restock touches the
catalog alone, and C is a state of the catalog, so restocks need no care. (The alternative, pausing buys,
needs a new command in the buy path and refuses buys meanwhile; an optimistic retry costs nothing while the
cluster is quiet, and a cluster too busy to ever look the same twice gets a clear error.)

Restore makes a new cluster: every replica of each group in the target configuration gets, in its empty
Raft storage, the same snapshot at index 1 (term 1) whose data is exactly what the runtime's snapshot of
that group would hold: the session layer's wrapping (`pygmy.raft.sessions.SessionStateMachine.snapshot`)
around the dumped tables, with an empty session table (the old cluster's clients and their sessions do not
carry over). At start, `pygmy.raft.driver.resume` restores each replica's state machine from it; a member
rebuilt later gets it by InstallSnapshot. No replica is seeded alone, and the catalog's settings table
(in the dump) says it is loaded. A new cluster id is written to `<data_dir>/cluster.json` (which `pygmy
up` reads) and into `<data_dir>/pygmy.toml`, the configuration to start the restored cluster with; every
member records it in its Raft identity at its first start.

A restored orders database would issue again the order ids issued after the backup, and so the request ids
the catalog already answered; so the order dump goes in with its epoch bumped (the namespace of its request
ids, `pygmy.common.request_ids`), and the catalog dump with that namespace as the one it accepts.
`restore_group` restores the order group alone into an existing cluster (its catalog kept as it is): the
catalog adopts the higher epoch at the first request and drops what it held for the old one.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import secrets
import time
from pathlib import Path
from typing import Any

import msgspec

from pygmy.catalog.machine import with_order_namespace
from pygmy.config import Config, NodeKind, dump as dump_config
from pygmy.ops.check import wait_no_pending
from pygmy.ops.nodes import GROUPS, Backends, OpsError
from pygmy.order.machine import next_epoch
from pygmy.raft.messages import HardState, Snapshot
from pygmy.raft.sessions import SessionStateMachine
from pygmy.raft.storage import RaftStorage

FORMAT = "pygmy-backup/1"
ATTEMPTS = 20
SNAPSHOT_INDEX = 1  # the restored log starts after this index; the first leader's entries follow it
SNAPSHOT_TERM = 1


class GroupDump(msgspec.Struct):
    kind: str
    index: int  # the log index of the source group the dump is at
    served_by: str
    summary: dict[str, Any]
    data: bytes  # the state machine's snapshot() bytes (its tables, no session table)
    blake2b: str  # of `data`, checked at restore


class Backup(msgspec.Struct):
    format: str
    created: float
    source_cluster: str | None
    attempts: int
    groups: dict[str, GroupDump]


# -- taking a backup -------------------------------------------------------------------------------


async def take_backup(backends: Backends, attempts: int = ATTEMPTS) -> Backup:
    """Both groups' dumps at points that form one state of the cluster (see the module docstring)."""
    for attempt in range(1, attempts + 1):
        await wait_no_pending(backends)
        first = await dump_group(backends, "order")
        catalog = await dump_group(backends, "catalog")
        second = await dump_group(backends, "order")
        if first.data == second.data and _pending(second) == 0:
            return Backup(FORMAT, time.time(), getattr(backends.config, "cluster_id", None), attempt,
                          {"catalog": catalog, "order": second})
        await asyncio.sleep(0.1 * attempt)
    raise OpsError(f"orders changed during each of {attempts} attempts; back up when the cluster is quieter")


async def dump_group(backends: Backends, kind: NodeKind) -> GroupDump:
    served_by, body = await backends.first(kind, "GET", "/internal/dump")
    data = base64.b64decode(body["data"])
    return GroupDump(kind, int(body["index"]), served_by, dict(body.get("summary") or {}), data, _hash(data))


def _pending(dump: GroupDump) -> int:
    return int(dump.summary.get("orders", {}).get("pending", 0))


def write_backup(path: Path, backup: Backup) -> None:
    """Atomically and durably: a backup file is either whole or absent."""
    temporary = path.with_name(path.name + ".tmp")
    with open(temporary, "wb") as f:
        f.write(msgspec.msgpack.encode(backup))
        f.flush()
        os.fsync(f.fileno())
    os.replace(temporary, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def read_backup(path: Path) -> Backup:
    try:
        backup = msgspec.msgpack.decode(path.read_bytes(), type=Backup)
    except OSError as exc:
        raise OpsError(f"cannot read {path}: {exc.strerror}") from None
    except msgspec.DecodeError as exc:
        raise OpsError(f"{path} is not a Pygmy backup: {exc}") from None
    if backup.format != FORMAT:
        raise OpsError(f"{path} is a {backup.format!r} backup; this version reads {FORMAT!r}")
    for kind in GROUPS:
        group = backup.groups.get(kind)
        if group is None:
            raise OpsError(f"{path} holds no {kind} group")
        if _hash(group.data) != group.blake2b:
            raise OpsError(f"{path}: the {kind} dump fails its checksum (the file is damaged)")
    return backup


# -- restoring ---------------------------------------------------------------------------------------


def restore(backup: Backup, config: Config, data_dir: Path) -> str:
    """Write every backend replica of `config` under `data_dir` from `backup`; the new cluster's id."""
    targets = [node for kind in GROUPS for node in config.of_kind(kind)]
    for node in targets:
        node_dir = data_dir / node.name
        if node_dir.exists() and any(node_dir.iterdir()):
            raise OpsError(f"{node_dir} is not empty: restore makes a new cluster, into empty directories only")
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster_id = _new_cluster_id(backup.source_cluster)
    orders, epoch = next_epoch(backup.groups["order"].data)
    _write_group(config, data_dir, "order", orders)
    _write_group(config, data_dir, "catalog", with_order_namespace(backup.groups["catalog"].data, cluster_id, epoch))
    _write_text(data_dir / "cluster.json",
                json.dumps({"cluster_id": cluster_id, "started": sorted(n.name for n in targets)}, indent=2) + "\n")
    _write_text(data_dir / "pygmy.toml", restored_config(config, data_dir, cluster_id))
    return cluster_id


def restore_group(backup: Backup, config: Config, data_dir: Path, kind: NodeKind) -> None:
    """Write one group's replicas (their directories empty) from `backup`, the rest of the cluster kept.

    Only the order group is safe alone: its next epoch keeps its request ids apart from the ones the kept
    catalog answered. Copies the catalog gave to orders issued after the backup stay taken (`pygmy check`
    reports them as sold without an order)."""
    if kind != "order":
        raise OpsError("only the order group can be restored alone: a catalog restored under live orders would forget their copies")
    for node in config.of_kind(kind):
        node_dir = data_dir / node.name
        if node_dir.exists() and any(node_dir.iterdir()):
            raise OpsError(f"{node_dir} is not empty: stop the cluster and empty every {kind} replica's directory first")
    _write_group(config, data_dir, kind, next_epoch(backup.groups[kind].data)[0])


def _write_group(config: Config, data_dir: Path, kind: NodeKind, state: bytes) -> None:
    snapshot = Snapshot(SNAPSHOT_INDEX, SNAPSHOT_TERM, runtime_snapshot(state))
    for node in config.of_kind(kind):
        storage = RaftStorage(data_dir / node.name / "raft")
        # The term of the snapshot's entry, so the first election is of term 2 and every log agrees at 1.
        storage.save(HardState(term=SNAPSHOT_TERM, commit=SNAPSHOT_INDEX), [], snapshot)
        storage.close()


def runtime_snapshot(state: bytes) -> bytes:
    """What the runtime's snapshot of a group holds for machine state `state`: the session layer's
    envelope around it, with no sessions (built by the session layer itself, so the format cannot drift)."""
    return SessionStateMachine(_Fixed(state)).snapshot()


def restored_config(config: Config, data_dir: Path, cluster_id: str) -> str:
    """The configuration to start the restored cluster with: `config`, its data in `data_dir`, the new id."""
    text = dump_config(config.with_overrides(data_dir=data_dir.resolve()))
    kept = [line for line in text.splitlines() if not line.startswith("cluster_id")]
    return f'# Restored by `pygmy restore`: a new cluster made from a backup.\ncluster_id = "{cluster_id}"\n' + "\n".join(kept) + "\n"


class _Fixed:
    """A state machine that holds one snapshot's state (only to have the session layer wrap it)."""

    def __init__(self, state: bytes) -> None:
        self.state = state

    def apply(self, command: bytes) -> bytes:
        raise NotImplementedError

    def query(self, query: bytes) -> bytes:
        raise NotImplementedError

    def snapshot(self) -> bytes:
        return self.state

    def restore(self, data: bytes) -> None:
        self.state = data


def _new_cluster_id(old: str | None) -> str:
    while (new := secrets.token_hex(8)) == old:
        pass
    return new


def _hash(data: bytes) -> str:
    return hashlib.blake2b(data, digest_size=16).hexdigest()


def _write_text(path: Path, text: str) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)
