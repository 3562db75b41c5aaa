"""Which cluster and which member a Raft data directory belongs to, recorded at its first start.

A directory started as another member (a copy-paste in a config, a volume mounted on the wrong node) or in
another cluster would mix two logs, and Raft's guarantees rest on each member's log being its own. The
file `identity` is written once through the storage (atomically and durably) and checked at every start;
a mismatch refuses to start with `StorageCorrupt` naming both.
"""

from __future__ import annotations

import msgspec

from pygmy.raft.storage import RaftStorage, StorageCorrupt

_FILE = "identity"


class Identity(msgspec.Struct, frozen=True):
    cluster: str
    member: int


def check_identity(storage: RaftStorage, cluster: str, member: int) -> None:
    """Record (first start) or check (every later one) that `storage` is `member`'s of `cluster`."""
    expected = Identity(cluster, member)
    data = storage.read_file(_FILE)
    if data is None:
        storage.replace_file(_FILE, msgspec.json.encode(expected))
        return
    try:
        found = msgspec.json.decode(data, type=Identity)
    except msgspec.DecodeError as exc:
        raise StorageCorrupt(f"{storage.directory / _FILE} is damaged ({exc}); it is only ever replaced atomically") from exc
    if found != expected:
        raise StorageCorrupt(
            f"{storage.directory} belongs to member {found.member} of cluster {found.cluster!r}, "
            f"not to member {member} of cluster {cluster!r}: refusing to mix their logs"
        )
