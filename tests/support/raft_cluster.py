"""A Raft group of real member processes on loopback, and the pipelined client for their client ports.

`LocalGroup` starts `python -m tests.support.raft_member` (or another entry speaking its client protocol,
as the benchmark's PySyncObj member does) once per member, from the repository root so that the module
is found wherever the tests or the benchmark were started from. Used by tests/raft/test_node_processes.py
and benchmarks/raft_bench.py.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import msgspec

from pygmy.raft.transport import read_frame

from .cluster import free_ports
from .raft_member import FrameWriter

REPO_ROOT = Path(__file__).resolve().parents[2]
MEMBER_ENTRY = ("-m", "tests.support.raft_member")


class RaftClient:
    """A pipelined client for one node's client port (tests and the benchmark)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._out = FrameWriter(writer)
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[str, bytes, int | None]]] = {}
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def connect(cls, host: str, port: int) -> RaftClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, op: str, payload: bytes = b"") -> tuple[str, bytes, int | None]:
        request_id = next(self._ids)
        future: asyncio.Future[tuple[str, bytes, int | None]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        self._out.write(msgspec.msgpack.encode([request_id, op, payload]))
        return await future

    async def status(self) -> dict[str, Any]:
        """The member's `Status` fields by name (`role` as its value, e.g. "leader")."""
        _, payload, _ = await self.call("status")
        return msgspec.msgpack.decode(payload)

    def abort(self) -> None:
        self._receiver.cancel()
        self._writer.close()

    async def _receive(self) -> None:
        try:
            while True:
                request_id, code, payload, leader = msgspec.msgpack.decode(await read_frame(self._reader))
                future = self._waiting.pop(request_id, None)
                if future is not None and not future.done():
                    future.set_result((code, payload, leader))
        except (OSError, asyncio.IncompleteReadError) as exc:
            for future in self._waiting.values():
                if not future.done():
                    future.set_exception(ConnectionError(f"connection to the node closed: {exc!r}"))
            self._waiting.clear()


class LocalGroup:
    """A Raft group of `size` server processes on loopback, for the process tests and the benchmark.

    Process management is synchronous (start, kill -9, restart, stop); talking to members is async.
    Always `stop()` in a `finally`: it kills every process this object started.
    """

    def __init__(
        self,
        size: int,
        base_dir: Path,
        secret: str = "local-group-secret",
        extra: Sequence[str] = (),
        # What to run after `python`, from the repository root: any entry taking raft_member's arguments
        # and serving its client port.
        entry: Sequence[str] = MEMBER_ENTRY,
    ) -> None:
        self.entry = list(entry)
        self.base_dir = base_dir.resolve()  # the members run from the repository root
        self.secret = secret
        self.extra = list(extra)
        self.ids = list(range(1, size + 1))
        ports = free_ports(2 * size)
        self.raft_addr = {i: ("127.0.0.1", ports[n]) for n, i in enumerate(self.ids)}
        self.client_addr = {i: ("127.0.0.1", ports[size + n]) for n, i in enumerate(self.ids)}
        self.procs: dict[int, subprocess.Popen[str]] = {}
        self._clients: dict[int, RaftClient] = {}

    def data_dir(self, node_id: int) -> Path:
        return self.base_dir / f"node-{node_id}"

    def start(self, node_id: int) -> None:
        peers = ",".join(f"{i}={h}:{p}" for i, (h, p) in self.raft_addr.items())
        command = [
            sys.executable, *self.entry, "--id", str(node_id), "--peers", peers,
            "--client-port", str(self.client_addr[node_id][1]), "--data-dir", str(self.data_dir(node_id)),
            *self.extra,
        ]  # fmt: skip
        env = {**os.environ, "PYGMY_RAFT_SECRET": self.secret}
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env, cwd=REPO_ROOT)
        self.procs[node_id] = proc
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the child prints "ready" once it listens, or dies and closes stdout
        if not line.startswith("ready"):
            raise RuntimeError(f"node {node_id} did not start (exit code {proc.poll()})")

    def start_all(self) -> None:
        for node_id in self.ids:
            self.start(node_id)

    def kill(self, node_id: int) -> None:
        """kill -9: no shutdown code runs, only what was fsynced survives."""
        proc = self.procs.pop(node_id)
        proc.kill()
        proc.wait(timeout=30)
        self._forget_client(node_id)

    def _forget_client(self, node_id: int) -> None:
        client = self._clients.pop(node_id, None)
        if client is not None:
            client.abort()

    def stop(self) -> None:
        for client in self._clients.values():
            client.abort()
        self._clients.clear()
        for proc in self.procs.values():
            proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)
        self.procs.clear()

    async def client(self, node_id: int) -> RaftClient:
        if node_id not in self._clients:
            self._clients[node_id] = await RaftClient.connect(*self.client_addr[node_id])
        return self._clients[node_id]

    async def statuses(self) -> dict[int, dict[str, Any]]:
        """The status of every running member that answers within a second."""
        found: dict[int, dict[str, Any]] = {}
        for node_id in list(self.procs):
            try:
                found[node_id] = await asyncio.wait_for((await self.client(node_id)).status(), 1.0)
            except (OSError, asyncio.TimeoutError):
                self._forget_client(node_id)
        return found

    async def leader(self, timeout: float = 20.0) -> int:
        """The member that is leader and that every running member agrees on."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            statuses = await self.statuses()
            leaders = {s["id"] for s in statuses.values() if s["role"] == "leader"}
            believed = {s["leader"] for s in statuses.values()}
            if len(leaders) == 1 and believed == leaders:
                return leaders.pop()
            await asyncio.sleep(0.02)
        raise TimeoutError(f"no agreed leader within {timeout} s")

    async def propose(self, command: bytes, timeout: float = 20.0) -> bytes:
        """Propose at whichever member leads, following NotLeader hints and retrying on any failure.

        A retry after an unknown outcome ("dropped", "timeout", a lost connection) may apply a plain
        command twice; use `propose_once` where that matters."""
        return await self._at_leader("propose", command, timeout)

    async def register_session(self, timeout: float = 20.0) -> int:
        """Open a client session at whichever member leads; its id (retries carry one key: one session)."""
        return msgspec.msgpack.decode(await self._at_leader("register", os.urandom(16), timeout))

    async def propose_once(self, session_command: bytes, timeout: float = 20.0) -> bytes:
        """Propose `[session, seq, ack, command]` (msgpack), applied at most once per session and seq."""
        return await self._at_leader("propose_once", session_command, timeout)

    async def read(self, query: bytes, timeout: float = 20.0) -> bytes:
        return await self._at_leader("read", query, timeout)

    async def _at_leader(self, op: str, payload: bytes, timeout: float) -> bytes:
        deadline = time.monotonic() + timeout
        target: int | None = None
        while time.monotonic() < deadline:
            node_id = target if target in self.procs else next(iter(self.procs))
            try:
                code, result, leader = await asyncio.wait_for((await self.client(node_id)).call(op, payload), 6.0)
            except (OSError, asyncio.TimeoutError):
                code, result, leader = "unreachable", b"", None
                self._forget_client(node_id)
            if code == "ok":
                return result
            # Ask the leader it names next, or try the running members in turn.
            live = sorted(self.procs)
            target = leader if leader in self.procs else live[(live.index(node_id) + 1) % len(live)]
            await asyncio.sleep(0.01)
        raise TimeoutError(f"{op} not done within {timeout} s")
