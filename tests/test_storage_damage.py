"""A replica whose database is damaged refuses to start; one whose directory is wiped is rebuilt from peers.

Real files on a real three-replica cluster: a replica is stopped (kill -9, or a clean stop where the damage
needs the database checkpointed into its main file), one of its files is damaged the way a disk, a crash
or an operator damages it, and the replica is started again with the same command line. It must exit 78
(`pygmy up` does not restart that) with one line naming what is wrong, instead of serving lost orders or a
re-seeded catalog. Then its directory is wiped, it is started with `--join`, and `pygmy check` must find
every replica of both groups identical: the distinction between damaged (refuse) and lost (rebuild).
"""

from __future__ import annotations

import os
import shutil
import signal
from pathlib import Path
from typing import Callable, Iterator

import pytest

from support.cli import run_pygmy, succeeded
from support.cluster import LIVE, Cluster
from support.http import Api
from support.polling import wait_for

EXIT_DAMAGED = 78
DEADLINE = 60.0
TRACEBACK = "Traceback (most recent call last)"
DB_FILE = {"catalog": "catalog.sqlite3", "order": "orders.sqlite3"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("damage"))
    c.start()
    api = Api(c.frontend_url)
    for item in (1, 2, 3, 1):  # orders in the order group, copies taken in the catalog
        assert api.post(f"/buy/{item}").status_code == 200
    yield c
    c.stop()


def stop_cleanly(c: Cluster, kind: str, node_id: int) -> None:
    """SIGTERM: the node closes its database, which checkpoints the WAL into the main file."""
    proc = c.procs[f"{kind}-{node_id}"]
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(DEADLINE)
    LIVE.pop(proc.pid, None)


def database(c: Cluster, kind: str, node_id: int) -> Path:
    return c.node_data_dir(kind, node_id) / DB_FILE[kind]


def delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)


def empty_database(path: Path) -> None:
    delete_database(path)
    path.write_bytes(b"")


def truncate_database(path: Path) -> None:
    size = path.stat().st_size
    assert size > 2 * 4096, f"the database has only {size} bytes: nothing to truncate"
    os.truncate(path, size // 2)


def flip_bytes(path: Path) -> None:
    # Page 2's b-tree header (4 KiB pages): a bad sector, or a bit rot, in the middle of the file.
    with open(path, "r+b") as f:
        f.seek(4096)
        block = f.read(16)
        f.seek(4096)
        f.write(bytes(b ^ 0xFF for b in block))


def delete_wal(path: Path) -> None:
    wal = path.with_name(path.name + "-wal")
    assert wal.exists(), "after kill -9 the WAL is still there"
    wal.unlink()
    path.with_name(path.name + "-shm").unlink(missing_ok=True)


def delete_raft_log(path: Path) -> None:
    shutil.rmtree(path.parent / "raft")


Damage = Callable[[Path], None]
CASES: list[tuple[str, str, bool, Damage, list[str]]] = [
    # kind, how it stops, (clean?), damage, words in the one-line reason
    ("catalog", "kill -9", False, delete_database, ["catalog.sqlite3 is missing", "has run before"]),
    ("order", "kill -9", False, empty_database, ["orders.sqlite3 is empty", "has run before"]),
    ("catalog", "clean stop", True, truncate_database, ["catalog.sqlite3 fails SQLite's quick_check"]),
    ("order", "clean stop", True, flip_bytes, ["orders.sqlite3 fails SQLite's quick_check"]),
    ("order", "kill -9", False, delete_wal, ["orders.sqlite3-wal is missing after an unclean stop"]),
    ("catalog", "kill -9", False, delete_raft_log, ["the state machine has applied up to index", "the log ends at 0"]),
]


@pytest.mark.parametrize(
    "kind, how, clean, damage, words", CASES,
    ids=[f"{kind}-{damage.__name__}" for kind, _, _, damage, _ in CASES],
)
def test_a_damaged_replica_refuses_to_start_with_78_and_once_wiped_is_rebuilt_from_its_peers(
    cluster: Cluster, kind: str, how: str, clean: bool, damage: Damage, words: list[str]
) -> None:
    c, node_id, name = cluster, 2, f"{kind}-2"
    if clean:
        stop_cleanly(c, kind, node_id)
    else:
        c.kill(kind, node_id)
    damage(database(c, kind, node_id))
    log_before = len(c.log(name))
    c.start_node(kind, node_id, wait=False)
    status = c.procs[name].wait(DEADLINE)
    said = c.log(name)[log_before:]
    assert status == EXIT_DAMAGED, f"{name} ({how}, {damage.__name__}) exited {status}\n{said}"
    assert TRACEBACK not in said, said
    reason = [line for line in said.splitlines() if "is damaged" in line]
    assert len(reason) == 1, said
    for word in words:
        assert word in reason[0], reason[0]

    shutil.rmtree(c.node_data_dir(kind, node_id))
    c.start_node(kind, node_id, join=True)
    assert Api(c.frontend_url).post("/buy/2").status_code == 200, "the cluster serves on"
    wait_until_caught_up(c, kind, node_id)
    succeeded(run_pygmy("check", "--config", str(c.config_path), timeout=DEADLINE))


def wait_until_caught_up(c: Cluster, kind: str, node_id: int) -> None:
    def caught_up() -> bool:
        leader, _ = c.leader(kind)
        ours, theirs = c.status(kind, node_id), c.status(kind, leader)
        return bool(ours and theirs and ours["role"] in ("follower", "leader") and ours["applied"] >= theirs["commit"])

    wait_for(f"{kind}-{node_id} to catch up", caught_up, DEADLINE, details=c.logs)
