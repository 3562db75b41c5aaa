"""MemoryFiles loses on a power loss exactly what a disk may lose, so tests over it mean what they say."""

from __future__ import annotations

import errno
import random
from pathlib import Path

import pytest

from pygmy.raft.sim.files import MemoryFiles, PowerLoss

D = Path("/d")


def fresh(seed: int = 0) -> MemoryFiles:
    files = MemoryFiles(random.Random(seed))
    files.mkdir(D)
    files.fsync_dir(Path("/"))
    return files


def test_synced_bytes_survive_and_unsynced_ones_do_not() -> None:
    files = fresh()
    handle = files.create(D / "f")
    files.fsync_dir(D)
    files.write(handle, b"synced")
    files.fdatasync(handle)
    files.write(handle, b"lost")
    assert files.read(D / "f") == b"syncedlost"  # a reader before the crash sees everything written
    files.crash(torn=False)
    assert files.read(D / "f") == b"synced"


def test_a_torn_tail_is_a_prefix_of_the_unsynced_bytes_then_perhaps_zeros() -> None:
    shapes = set()
    for seed in range(200):
        files = fresh(seed)
        handle = files.create(D / "f")
        files.fsync_dir(D)
        files.write(handle, b"base")
        files.fdatasync(handle)
        files.write(handle, b"abcdefgh")
        files.crash()
        data = files.read(D / "f")
        assert data.startswith(b"base") and len(data) <= 12
        tail = data[4:]
        written = next((n for n in range(len(tail), -1, -1) if b"abcdefgh".startswith(tail[:n])), 0)
        assert tail[written:] == bytes(len(tail) - written), tail  # after the kept prefix, only zeros
        shapes.add((written > 0, len(tail) > written))
        files.crash()
        assert files.read(D / "f") == data  # what a power loss left is what the disk holds
    assert shapes == {(False, False), (True, False), (False, True), (True, True)}


def test_a_new_file_or_directory_needs_its_directory_synced() -> None:
    files = fresh()
    files.close(files.create(D / "kept"))
    files.mkdir(D / "sub")
    files.fsync_dir(D)
    files.close(files.create(D / "forgotten"))
    files.crash()
    assert files.exists(D / "kept") and files.exists(D / "sub")
    assert not files.exists(D / "forgotten")


def test_a_rename_needs_its_directory_synced() -> None:
    files = fresh()
    for name, content in [("target", b"old"), ("target.tmp", b"new")]:
        handle = files.create(D / name)
        files.write(handle, content)
        files.fdatasync(handle)
        files.close(handle)
    files.fsync_dir(D)
    files.rename(D / "target.tmp", D / "target")
    assert files.read(D / "target") == b"new" and not files.exists(D / "target.tmp")
    files.crash()
    assert files.read(D / "target") == b"old" and files.read(D / "target.tmp") == b"new"
    files.rename(D / "target.tmp", D / "target")
    files.fsync_dir(D)
    files.crash()
    assert files.read(D / "target") == b"new" and not files.exists(D / "target.tmp")


def test_an_injected_error_does_nothing_and_a_power_loss_crashes() -> None:
    files = fresh()
    handle = files.create(D / "f")
    files.fsync_dir(D)
    files.write(handle, b"ab")
    files.fail_at(files.operations + 1)
    with pytest.raises(OSError) as caught:
        files.fdatasync(handle)
    assert caught.value.errno == errno.EIO and files.durable(D / "f") == b""
    files.fdatasync(handle)
    files.fail_at(files.operations + 2, power_loss=True)
    files.write(handle, b"cd")
    with pytest.raises(PowerLoss):
        files.fdatasync(handle)
    assert files.read(D / "f")[:2] == b"ab"
    with pytest.raises(OSError, match="bad handle"):
        files.write(handle, b"x")  # the process died with the power


def test_a_flipped_bit_is_durable() -> None:
    files = fresh()
    handle = files.create(D / "f")
    files.fsync_dir(D)
    files.write(handle, b"\x00\x00")
    files.fdatasync(handle)
    files.flip_bit(D / "f", 1, 3)
    files.crash()
    assert files.read(D / "f") == b"\x00\x08"
