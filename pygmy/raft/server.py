"""Run one member of a Raft group as a process, with a demo key-value state machine and a client port.

    python -m pygmy.raft.server --id 1 --peers 1=127.0.0.1:9101,2=127.0.0.1:9102,3=127.0.0.1:9103 \\
        --client-port 9201 --data-dir data/raft-1 --secret s3cret

Used by the real-process tests and the benchmark; the services embed `RaftGroup` directly instead.

The secret may come from the environment (PYGMY_RAFT_SECRET) instead, to keep it out of `ps`.

The client port speaks the transport's framing (4-byte length + msgpack), pipelined. A request is
`[id, op, payload]`, op one of:

- "propose": payload is a command; "register": payload a key, opens a client session (the same one
  again for a retry with that key), answers its id (msgpack);
  "propose_once": payload `[session, seq, ack, command]`, applied at most once per session and seq;
- "read" (linearizable), "local_read" (this replica's state, possibly stale), "status";
- "transfer": payload is the id of the member to hand leadership to.

The answer is `[id, code, payload, leader]`, code one of "ok", "not_leader" (leader = the id this node
believes leads, or None), "dropped" (outcome unknown: retry, with a session), "timeout" or "error".
Demo commands are msgpack arrays: `["incr", key, n]` answers the new value, `["put", key, value]`
answers b""; queries: `["get", key]`.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import msgspec

from pygmy.raft.core import NotLeader
from pygmy.raft.node import GroupOptions, ProposalDropped, RaftGroup
from pygmy.raft.transport import pack_frame, read_frame

REQUEST_TIMEOUT = 5.0


class KeyValue:
    """The demo state machine: integer and bytes values by key."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def apply(self, command: bytes) -> bytes:
        op, key, arg = msgspec.msgpack.decode(command)
        if op == "incr":
            self.data[key] = self.data.get(key, 0) + arg
            return msgspec.msgpack.encode(self.data[key])
        if op == "put":
            self.data[key] = arg
            return b""
        raise ValueError(f"unknown command {op!r}")

    def query(self, query: bytes) -> bytes:
        op, key = msgspec.msgpack.decode(query)
        return msgspec.msgpack.encode(self.data.get(key))

    def snapshot(self) -> bytes:
        return msgspec.msgpack.encode(self.data)

    def restore(self, data: bytes) -> None:
        self.data = msgspec.msgpack.decode(data)


def parse_peers(text: str) -> dict[int, tuple[str, int]]:
    """`1=127.0.0.1:9101,2=127.0.0.1:9102` -> {1: ("127.0.0.1", 9101), ...}"""
    peers: dict[int, tuple[str, int]] = {}
    for item in text.split(","):
        node, _, address = item.partition("=")
        host, _, port = address.rpartition(":")
        peers[int(node)] = (host, int(port))
    return peers


class _ClientConnection:
    """One client connection: requests are answered from future callbacks, not a task each, and the
    answers ready in one loop iteration leave in one write."""

    def __init__(self, group: RaftGroup, writer: asyncio.StreamWriter) -> None:
        self.group = group
        self.writer = writer
        self.loop = asyncio.get_running_loop()
        self.out: list[bytes] = []

    def request(self, request_id: int, op: str, payload: bytes) -> None:
        group = self.group
        try:
            if op in ("propose", "propose_once", "read", "register"):
                if op == "propose_once":  # payload: [session, seq, ack, command]
                    session, seq, ack, command = msgspec.msgpack.decode(payload)
                    future = group.submit(command, session=session, seq=seq, ack=ack)
                elif op == "register":
                    future = group.submit_registration(payload)
                else:
                    future = group.submit(payload) if op == "propose" else group.submit_read(payload)
                timer = self.loop.call_later(REQUEST_TIMEOUT, future.cancel)
                future.add_done_callback(lambda f: self._settled(request_id, f, timer))
            elif op == "transfer":  # payload: the target's id; answered once this node hears it lead
                future = asyncio.ensure_future(group.transfer_leadership(msgspec.msgpack.decode(payload)))
                future.add_done_callback(lambda f: self._settled(request_id, f, None))
            elif op == "local_read":  # this replica's state as it is, not linearizable (tests look at followers)
                self.answer(request_id, "ok", group.state_machine.query(payload), None)
            elif op == "status":
                s = group.status()
                fields = [s.id, s.role.value, s.term, s.leader, s.commit, s.applied, s.last_index, s.snapshot_index]
                self.answer(request_id, "ok", msgspec.msgpack.encode(fields), s.leader)
            else:
                self.answer(request_id, "error", f"unknown op {op!r}".encode(), None)
        except NotLeader as exc:
            self.answer(request_id, "not_leader", b"", exc.leader)

    def _settled(self, request_id: int, future: asyncio.Future[Any], timer: asyncio.TimerHandle | None) -> None:
        if timer is not None:
            timer.cancel()
        if future.cancelled() or isinstance(future.exception(), TimeoutError):
            self.answer(request_id, "timeout", b"", self.group.status().leader)
        elif isinstance(exc := future.exception(), NotLeader):
            self.answer(request_id, "not_leader", b"", exc.leader)
        elif isinstance(exc, ProposalDropped):
            self.answer(request_id, "dropped", str(exc).encode(), None)
        elif exc is not None:
            self.answer(request_id, "error", repr(exc).encode(), None)
        else:
            self.answer(request_id, "ok", future.result() or b"", None)

    def answer(self, request_id: int, code: str, payload: bytes, leader: int | None) -> None:
        if not self.out:
            self.loop.call_soon(self._flush)
        self.out.append(pack_frame(msgspec.msgpack.encode([request_id, code, payload, leader])))

    def _flush(self) -> None:
        if not self.writer.is_closing():
            self.writer.write(b"".join(self.out))
        self.out.clear()


async def serve_clients(group: RaftGroup, host: str, port: int) -> asyncio.Server:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _ClientConnection(group, writer)
        try:
            while True:
                connection.request(*msgspec.msgpack.decode(await read_frame(reader)))
        except (OSError, asyncio.IncompleteReadError, msgspec.DecodeError, TypeError, ValueError):
            pass  # gone, or not speaking this protocol: drop the connection
        except asyncio.CancelledError:
            pass  # shutting down; returning normally keeps asyncio from logging it
        finally:
            writer.close()

    return await asyncio.start_server(handle, host, port)


class RaftClient:
    """A pipelined client for one node's client port (tests and the benchmark)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._reader = reader
        self._writer = writer
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[tuple[str, bytes, int | None]]] = {}
        self._out: list[bytes] = []
        self._receiver = asyncio.create_task(self._receive())

    @classmethod
    async def connect(cls, host: str, port: int) -> RaftClient:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def call(self, op: str, payload: bytes = b"") -> tuple[str, bytes, int | None]:
        request_id = next(self._ids)
        future: asyncio.Future[tuple[str, bytes, int | None]] = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        if not self._out:
            asyncio.get_running_loop().call_soon(self._flush)
        self._out.append(pack_frame(msgspec.msgpack.encode([request_id, op, payload])))
        return await future

    def _flush(self) -> None:
        # Requests made in one loop iteration leave in one write.
        if not self._writer.is_closing():
            self._writer.write(b"".join(self._out))
        self._out.clear()

    async def status(self) -> dict[str, Any]:
        _, payload, _ = await self.call("status")
        keys = ("id", "role", "term", "leader", "commit", "applied", "last_index", "snapshot_index")
        return dict(zip(keys, msgspec.msgpack.decode(payload)))

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


def free_port() -> int:
    """A TCP port nobody listens on right now (the OS picks it; tiny race until the child binds it)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
        # What to run after `python`: any entry taking this module's arguments and serving its client port.
        entry: Sequence[str] = ("-m", "pygmy.raft.server"),
    ) -> None:
        self.entry = list(entry)
        self.base_dir = base_dir
        self.secret = secret
        self.extra = list(extra)
        self.ids = list(range(1, size + 1))
        self.raft_addr = {i: ("127.0.0.1", free_port()) for i in self.ids}
        self.client_addr = {i: ("127.0.0.1", free_port()) for i in self.ids}
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
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
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
        """Open a client session at whichever member leads; its id (a retry may leave an unused one behind)."""
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


async def _run(args: argparse.Namespace) -> None:
    peers = parse_peers(args.peers)
    options = GroupOptions(
        sync=not args.no_fsync, snapshot_every=args.snapshot_every, write_in_thread=not args.write_on_loop
    )
    if args.election_ticks:
        options = replace(options, raft=replace(options.raft, election_ticks=args.election_ticks))
    group = RaftGroup(args.id, peers, args.data_dir, args.secret, KeyValue(), options)
    await group.start()
    server = await serve_clients(group, peers[args.id][0], args.client_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(f"ready {args.id} pid {os.getpid()}", flush=True)
    await stop.wait()
    server.close()
    await group.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--peers", required=True, help="id=host:port,... for every member, this one included")
    parser.add_argument("--client-port", type=int, required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--secret", default=os.environ.get("PYGMY_RAFT_SECRET"), help="the cluster secret")
    parser.add_argument("--snapshot-every", type=int, default=10_000)
    parser.add_argument("--election-ticks", type=int, default=0, help="override the election timeout (ticks)")
    parser.add_argument("--no-fsync", action="store_true", help="skip fsync (only to measure its cost)")
    parser.add_argument("--write-on-loop", action="store_true", help="fsync on the event loop thread (to compare)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give the cluster secret with --secret or PYGMY_RAFT_SECRET")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(_run(args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
