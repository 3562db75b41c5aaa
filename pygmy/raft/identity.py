"""Which cluster and which member a Raft data directory belongs to, recorded at its first start.

A directory started as another member (a copy-paste in a config, a volume mounted on the wrong node) or in
another cluster would mix two logs, and Raft's guarantees rest on each member's log being its own. The
file `identity` is written once, durably (temporary file, fsync, rename, fsync of the directory), and
checked at every start; a mismatch refuses to start with `StorageCorrupt` naming both.
"""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

from pygmy.raft.storage import StorageCorrupt

_FILE = "identity"


class Identity(msgspec.Struct, frozen=True):
    cluster: str
    member: int


def check_identity(directory: Path, cluster: str, member: int) -> None:
    """Record (first start) or check (every later one) that `directory` is `member`'s of `cluster`."""
    path = directory / _FILE
    expected = Identity(cluster, member)
    if path.exists():
        try:
            found = msgspec.json.decode(path.read_bytes(), type=Identity)
        except msgspec.DecodeError as exc:
            raise StorageCorrupt(f"{path} is damaged ({exc}); it is only ever replaced atomically") from exc
        if found != expected:
            raise StorageCorrupt(
                f"{directory} belongs to member {found.member} of cluster {found.cluster!r}, "
                f"not to member {member} of cluster {cluster!r}: refusing to mix their logs"
            )
        return
    tmp = directory / (_FILE + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, msgspec.json.encode(expected))
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
