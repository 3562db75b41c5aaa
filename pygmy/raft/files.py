"""The file-system calls Raft storage makes, behind one small interface, so a test or the simulator can fault them.

`Files` names the few operations `RaftStorage` needs; `OsFiles` does them on the real disk. The in-memory
`pygmy.raft.sim.files.MemoryFiles` models what a power loss keeps, so the same storage code can be crashed
at any step. Durability is explicit: data is durable only after `fdatasync` of its handle, and a directory
entry (a created file or directory, a rename) only after `fsync_dir` of the directory holding it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol


class Files(Protocol):
    """File operations on paths and on integer handles of files open for writing."""

    def exists(self, path: Path) -> bool: ...

    def read(self, path: Path) -> bytes:
        """The whole content of the file at `path`."""
        ...

    def mkdir(self, path: Path) -> None:
        """Create the directory `path`; its parent must exist. Durable after `fsync_dir(path.parent)`."""
        ...

    def create(self, path: Path) -> int:
        """Open `path` for writing, created or emptied. The new name is durable after `fsync_dir(path.parent)`."""
        ...

    def open_append(self, path: Path) -> int:
        """Open the existing file `path` for appending."""
        ...

    def write(self, handle: int, data: bytes) -> None:
        """Write all of `data` at the end of the file (raises OSError if it cannot)."""
        ...

    def fdatasync(self, handle: int) -> None:
        """Make what was written to `handle`, and the file's size, durable."""
        ...

    def truncate(self, handle: int, size: int) -> None:
        """Cut the file to `size` bytes (durable after `fdatasync`)."""
        ...

    def close(self, handle: int) -> None: ...

    def rename(self, source: Path, target: Path) -> None:
        """Atomically replace `target` with `source` (same directory). Durable after `fsync_dir`."""
        ...

    def fsync_dir(self, path: Path) -> None:
        """Make the entries of directory `path` (creations, renames) durable."""
        ...


class OsFiles:
    """`Files` on the operating system's file system."""

    def exists(self, path: Path) -> bool:
        return path.exists()

    def read(self, path: Path) -> bytes:
        return path.read_bytes()

    def mkdir(self, path: Path) -> None:
        path.mkdir()

    def create(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)

    def open_append(self, path: Path) -> int:
        return os.open(path, os.O_WRONLY | os.O_APPEND)

    def write(self, handle: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            # A regular file may take fewer bytes than asked (a full disk); the next call then raises.
            view = view[os.write(handle, view) :]

    def fdatasync(self, handle: int) -> None:
        os.fdatasync(handle)

    def truncate(self, handle: int, size: int) -> None:
        os.ftruncate(handle, size)

    def close(self, handle: int) -> None:
        os.close(handle)

    def rename(self, source: Path, target: Path) -> None:
        os.replace(source, target)

    def fsync_dir(self, path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
