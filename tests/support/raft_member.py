"""One member of a Raft group as a process, with a demo key-value state machine and a client port.

    python -m tests.support.raft_member --id 1 --peers 1=127.0.0.1:9101,2=127.0.0.1:9102,3=127.0.0.1:9103 \\
        --client-port 9201 --data-dir data/raft-1 --secret s3cret      # from the repository root

The process that `LocalGroup` (tests/support/raft_cluster.py) starts for the real-process tests and the
benchmark; the services embed `RaftGroup` directly instead. It imports only `pygmy` and its dependencies.

The secret may come from the environment (PYGMY_RAFT_SECRET) instead, to keep it out of `ps`.

The client port speaks the transport's framing (4-byte length + msgpack), pipelined. A request is
`[id, op, payload]`, op one of:

- "propose": payload is a command; "register": payload a key, opens a client session (the same one
  again for a retry with that key), answers its id (msgpack); "propose_once": payload
  `[session, seq, ack, command]`, applied at most once per session and seq;
- "read" (linearizable), "local_read" (this replica's state, possibly stale), "status" (a `Status` of
  `pygmy.raft.core` as a msgpack map, `encode_status`);
- "transfer": payload is the id of the member to hand leadership to.

The answer is `[id, code, payload, leader]`, code one of "ok", "not_leader" (leader = the id this node
believes leads, or None), "dropped" (outcome unknown: retry, with a session), "timeout" or "error".
Demo commands are msgpack arrays: `["incr", key, n]` answers the new value, `["put", key, value]`
answers b""; queries: `["get", key]`.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import replace
from typing import Any

import msgspec

from pygmy.raft.core import NotLeader, Status
from pygmy.raft.node import GroupOptions, ProposalDropped, RaftGroup
from pygmy.raft.storage import StorageCorrupt
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


def encode_status(status: Status) -> bytes:
    """The "status" answer: the fields of `Status` by name (the role by its value)."""
    return msgspec.msgpack.encode(status)


class FrameWriter:
    """Frames written during one loop iteration leave in one write, on both ends of the client port: a
    pipelined burst costs one syscall, not one per request or answer."""

    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self._writer = writer
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []

    def write(self, payload: bytes) -> None:
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(pack_frame(payload))

    def _flush(self) -> None:
        if not self._writer.is_closing():
            self._writer.write(b"".join(self._out))
        self._out.clear()


class _ClientConnection:
    """One client connection: requests are answered from future callbacks, not a task each."""

    def __init__(self, group: RaftGroup, writer: asyncio.StreamWriter) -> None:
        self.group = group
        self.loop = asyncio.get_running_loop()
        self.out = FrameWriter(writer)

    def request(self, request_id: int, op: str, payload: bytes) -> None:
        group = self.group
        try:
            if op in ("propose", "propose_once", "read", "register"):
                if op == "propose_once":  # payload: [session, seq, ack, command]
                    session, seq, ack, command = msgspec.msgpack.decode(payload)
                    future = group.submit(command, session=session, seq=seq, ack=ack)
                elif op == "register":  # payload: the client's key for its session
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
                status = group.status()
                self.answer(request_id, "ok", encode_status(status), status.leader)
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
        self.out.write(msgspec.msgpack.encode([request_id, code, payload, leader]))


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


EXIT_STORAGE_CORRUPT = 78  # EX_CONFIG: not a crash to retry


async def _run(args: argparse.Namespace) -> None:
    peers = parse_peers(args.peers)
    options = GroupOptions(
        sync=not args.no_fsync, snapshot_every=args.snapshot_every, write_in_thread=not args.write_on_loop
    )
    if args.election_ticks:
        options = replace(options, raft=replace(options.raft, election_ticks=args.election_ticks))
    group = RaftGroup(args.id, peers, args.data_dir, args.secret, KeyValue(), options, join=args.join)
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
    parser.add_argument("--join", action="store_true", help="an empty data dir rejoins an existing cluster (lost disk)")
    args = parser.parse_args(argv)
    if not args.secret:
        parser.error("give the cluster secret with --secret or PYGMY_RAFT_SECRET")
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    try:
        asyncio.run(_run(args))
    except StorageCorrupt as exc:
        # One line, and an exit status that tells a supervisor not to restart it: damage needs an operator
        # (wipe the member and start it with --join).
        print(f"raft member {args.id} refuses to start: {exc}", file=sys.stderr, flush=True)
        sys.exit(EXIT_STORAGE_CORRUPT)
    sys.stdout.flush()


if __name__ == "__main__":
    main()
