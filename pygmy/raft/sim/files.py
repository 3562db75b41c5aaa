"""An in-memory file system that loses, on a simulated power loss, exactly what a real disk may lose.

`MemoryFiles` implements `pygmy.raft.files.Files`. Each file has the bytes a reader sees and the bytes that
are durable (as of its last `fdatasync`); each directory has its entries and its durable entries (as of its
last `fsync_dir`). `crash()` keeps only what is durable, except that bytes appended since the last sync
may survive in part: a random prefix of them, then possibly zeros (the file grew but the data never reached
the disk). A created file or a rename whose directory was not fsynced is gone. All randomness comes from
the `random.Random` passed in, so a seed replays a run exactly.

Faults for tests: `fail_at(n)` makes the n-th operation raise OSError (or lose power during it), and
`flip_bit()` damages a durable byte as a failing disk would.
"""

from __future__ import annotations

import errno
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TypeVar


class PowerLoss(OSError):
    """Raised by the operation during which the power failed; the files are as `crash()` left them."""


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)  # what reads see
    durable: bytes = b""  # what survives a power loss


@dataclass
class _Dir:
    entries: dict[str, int] = field(default_factory=dict)  # name -> node number
    durable: dict[str, int] = field(default_factory=dict)


@dataclass
class _Fault:
    error: OSError
    power_loss: bool


_N = TypeVar("_N", _File, _Dir)


class MemoryFiles:
    """`Files` in memory, with power loss and injected faults. Paths are POSIX paths from its own root."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._nodes: dict[int, _File | _Dir] = {0: _Dir()}
        self._next_node = 1
        self._handles: dict[int, int] = {}  # open handle -> file node
        self._next_handle = 3
        self._faults: dict[int, _Fault] = {}
        self.operations = 0  # how many operations were called so far; the next one is number operations + 1

    # -- faults --------------------------------------------------------------------------------

    def fail_at(self, operation: int, *, power_loss: bool = False, error: OSError | None = None) -> None:
        """Make operation number `operation` fail: raise `error` (EIO by default) having done nothing, or,
        with `power_loss`, lose power during it (it may or may not have taken effect) and raise PowerLoss."""
        self._faults[operation] = _Fault(error or OSError(errno.EIO, "injected I/O error"), power_loss)

    def clear_faults(self) -> None:
        """Forget the faults injected for operations that have not happened."""
        self._faults.clear()

    def crash(self, *, torn: bool = True) -> None:
        """Lose power: keep what is durable and, with `torn`, a random part of what was appended unsynced."""
        self._handles.clear()
        for node in self._nodes.values():
            if isinstance(node, _Dir):
                node.entries = dict(node.durable)
                continue
            unsynced = node.data[len(node.durable) :] if node.data.startswith(node.durable) else b""
            node.data = bytearray(node.durable)
            if torn and unsynced:
                kept = self._rng.randint(0, len(unsynced))
                node.data += unsynced[:kept]
                if self._rng.random() < 0.5:  # the file grew, but the data never reached the disk
                    node.data += bytes(self._rng.randint(0, len(unsynced) - kept))
            node.durable = bytes(node.data)  # what a power loss left on the disk is all there is

    def flip_bit(self, path: Path | str, offset: int, bit: int = 0) -> None:
        """Damage the byte at `offset` of the file at `path`, durably (a disk error, not a crash)."""
        node = self._file(path)
        node.data[offset] ^= 1 << bit
        durable = bytearray(node.durable)
        if offset < len(durable):
            durable[offset] ^= 1 << bit
            node.durable = bytes(durable)

    def durable(self, path: Path | str) -> bytes:
        """The bytes of the file at `path` that a power loss now would keep for sure."""
        return self._file(path).durable

    # -- Files ---------------------------------------------------------------------------------

    def exists(self, path: Path) -> bool:
        self._operation()
        return self._lookup(path) is not None

    def read(self, path: Path) -> bytes:
        node = self._file(path)
        self._operation()
        return bytes(node.data)

    def mkdir(self, path: Path) -> None:
        parent, name = self._parent(path)
        if name in parent.entries:
            raise FileExistsError(errno.EEXIST, "exists", str(path))
        self._operation(lambda: parent.entries.__setitem__(name, self._new(_Dir())))

    def create(self, path: Path) -> int:
        parent, name = self._parent(path)
        number = parent.entries.get(name)
        if number is not None and not isinstance(self._nodes[number], _File):
            raise IsADirectoryError(errno.EISDIR, "is a directory", str(path))

        def effect() -> None:
            if name in parent.entries:
                self._file(path).data = bytearray()  # O_TRUNC, durable only once synced
            else:
                parent.entries[name] = self._new(_File())

        self._operation(effect)
        return self._open(parent.entries[name])

    def open_append(self, path: Path) -> int:
        number = self._lookup(path)
        if number is None or not isinstance(self._nodes[number], _File):
            raise FileNotFoundError(errno.ENOENT, "no such file", str(path))
        self._operation()
        return self._open(number)

    def write(self, handle: int, data: bytes) -> None:
        node = self._handle(handle)
        # A failing write (a full disk, say) may have written part of the data.
        self._operation(
            lambda: node.data.extend(data), partial=lambda: node.data.extend(data[: self._rng.randint(0, len(data))])
        )

    def fdatasync(self, handle: int) -> None:
        node = self._handle(handle)
        self._operation(lambda: setattr(node, "durable", bytes(node.data)))

    def truncate(self, handle: int, size: int) -> None:
        node = self._handle(handle)
        def effect() -> None:
            del node.data[size:]
            node.data.extend(bytes(size - len(node.data)))  # like ftruncate, a larger size adds zeros

        self._operation(effect)

    def close(self, handle: int) -> None:
        self._handle(handle)
        self._operation(lambda: self._handles.__delitem__(handle))

    def rename(self, source: Path, target: Path) -> None:
        source_dir, source_name = self._parent(source)
        target_dir, target_name = self._parent(target)
        if source_name not in source_dir.entries:
            raise FileNotFoundError(errno.ENOENT, "no such file", str(source))
        self._operation(lambda: target_dir.entries.__setitem__(target_name, source_dir.entries.pop(source_name)))

    def fsync_dir(self, path: Path) -> None:
        node = self._directory(path)
        self._operation(lambda: setattr(node, "durable", dict(node.entries)))

    # -- internals -----------------------------------------------------------------------------

    def _operation(self, effect: Callable[[], None] | None = None, partial: Callable[[], None] | None = None) -> None:
        """Count an operation and do its `effect`, unless a fault was injected for it."""
        self.operations += 1
        fault = self._faults.pop(self.operations, None)
        if fault is None:
            if effect is not None:
                effect()
            return
        if not fault.power_loss:
            if partial is not None:
                partial()
            raise fault.error
        if effect is not None and self._rng.random() < 0.5:
            effect()  # the power failed just after the operation took effect
        self.crash()
        raise PowerLoss(errno.EIO, f"power lost during operation {self.operations}")

    def _new(self, node: _File | _Dir) -> int:
        number = self._next_node
        self._next_node += 1
        self._nodes[number] = node
        return number

    def _open(self, number: int) -> int:
        handle = self._next_handle
        self._next_handle += 1
        self._handles[handle] = number
        return handle

    def _handle(self, handle: int) -> _File:
        number = self._handles.get(handle)
        if number is None:
            raise OSError(errno.EBADF, f"bad handle {handle} (closed, or lost with the power)")
        node = self._nodes[number]
        assert isinstance(node, _File)
        return node

    def _lookup(self, path: Path | str) -> int | None:
        number: int | None = 0
        for part in _parts(path):
            node = self._nodes[number] if number is not None else None
            if not isinstance(node, _Dir):
                return None
            number = node.entries.get(part)
        return number

    def _parent(self, path: Path | str) -> tuple[_Dir, str]:
        parts = _parts(path)
        if not parts:
            raise FileExistsError(errno.EEXIST, "the root exists", str(path))
        return self._directory(PurePosixPath("/", *parts[:-1])), parts[-1]

    def _directory(self, path: Path | str) -> _Dir:
        return self._node(path, _Dir, "no such directory")

    def _file(self, path: Path | str) -> _File:
        return self._node(path, _File, "no such file")

    def _node(self, path: Path | str, kind: type[_N], missing: str) -> _N:
        number = self._lookup(path)
        node = self._nodes[number] if number is not None else None
        if not isinstance(node, kind):
            raise FileNotFoundError(errno.ENOENT, missing, str(path))
        return node


def _parts(path: Path | str) -> tuple[str, ...]:
    """The names along `path`, read from the root (a relative path counts from the root too)."""
    return tuple(part for part in PurePosixPath(path).parts if part not in ("/", "."))
