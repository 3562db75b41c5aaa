"""Raft messages between nodes: one persistent, authenticated TCP stream per direction and peer.

Each node dials every peer and sends on that connection only; it receives on the connections the peers
dial to it. A frame is a 4-byte big-endian length and a msgpack array of messages: whatever was queued
for a peer while the previous write was in flight goes out as one frame in one write, so a Ready's
messages, and a burst of them under load, cost one syscall per peer.

Connecting proves both sides know the cluster secret without sending it (HMAC-SHA256 challenge and
response over fresh nonces from both sides, bound to both node ids):

    server -> client   MAGIC, server nonce
    client -> server   client id, client nonce, HMAC(secret, "client" | server nonce | client nonce | ids)
    server -> client   HMAC(secret, "server" | client nonce | server nonce | ids)

A peer that fails this is disconnected before any message is read. Every frame after the handshake
carries an HMAC-SHA256 of its sequence number on the connection and its payload, under a key only the two
ends can derive (from the secret and both nonces), so a frame changed, injected, replayed, reordered or
dropped on the way fails the check of the next frame: the receiver logs it once and closes the connection
(the sender re-dials; Raft retransmits). Frames are `length | payload | MAC`. Lost connections are re-dialled
with capped exponential backoff; messages queued meanwhile are bounded, and Raft retransmits anyway.

Why TCP and not HTTP: a persistent stream with this framing needs no per-request headers, parsing or
response; measured against aiohttp keep-alive POSTs in docs/raft-benchmark.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import os
import ssl
import struct
from collections import deque
from collections.abc import Callable
from typing import Any

import msgspec

from pygmy.common.tcp_liveness import watch
from pygmy.raft.messages import Message

log = logging.getLogger(__name__)

MAGIC = b"PGR1"
_NONCE = 16
_MAC = 32
_LENGTH = struct.Struct(">I")
_SEQUENCE = struct.Struct(">Q")
_HELLO = struct.Struct(f">q{_NONCE}s{_MAC}s")  # client id, client nonce, client MAC
# A frame holds one burst of messages: AppendEntries of up to max_entries_per_message entries, or snapshot
# chunks of RaftConfig.snapshot_chunk_bytes (1 MiB); a length beyond this is a broken or hostile peer.
MAX_FRAME = 64 << 20
HANDSHAKE_TIMEOUT = 5.0
# Re-dial quickly at first (a restarted peer is back within a few hundred ms), but not in a hot loop.
MIN_BACKOFF = 0.02
MAX_BACKOFF = 0.5
MAX_QUEUED = 10_000  # per peer; older messages are dropped first when a peer is unreachable

_encode_batch = msgspec.msgpack.Encoder().encode
_decode_batch = msgspec.msgpack.Decoder(list[Message]).decode


class HandshakeFailed(ConnectionError):
    """The other side does not know the cluster secret, or is not who it claims to be."""


class FrameRejected(ConnectionError):
    """A frame failed its MAC (or its length limit): altered, forged, replayed or out of order."""


class FrameSealer:
    """The sending end of one connection: frames with a MAC over their sequence number and payload."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.sequence = 0

    def seal(self, payload: bytes) -> bytes:
        mac = _frame_mac(self.key, self.sequence, payload)
        self.sequence += 1
        return _LENGTH.pack(len(payload)) + payload + mac


class FrameOpener:
    """The receiving end: a frame is accepted only with the MAC of the next sequence number."""

    def __init__(self, key: bytes) -> None:
        self.key = key
        self.sequence = 0

    async def read(self, reader: asyncio.StreamReader) -> bytes:
        (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
        if length > MAX_FRAME:
            raise FrameRejected(f"frame {self.sequence} declares {length} bytes, over the limit")
        data = await reader.readexactly(length + _MAC)
        payload, mac = data[:length], data[length:]
        if not hmac.compare_digest(mac, _frame_mac(self.key, self.sequence, payload)):
            raise FrameRejected(f"frame {self.sequence} fails its MAC (altered, forged, replayed or out of order)")
        self.sequence += 1
        return payload


def _frame_mac(key: bytes, sequence: int, payload: bytes) -> bytes:
    return hmac.new(key, _SEQUENCE.pack(sequence) + payload, hashlib.sha256).digest()


def _frame_key(secret: bytes, server_nonce: bytes, client_nonce: bytes, client_id: int, server_id: int) -> bytes:
    # Fresh per connection (both nonces), so a frame of one connection is worthless on any other.
    return _mac(secret, b"frames", server_nonce, client_nonce, client_id, server_id)


def pack_frame(payload: bytes) -> bytes:
    return _LENGTH.pack(len(payload)) + payload


async def read_frame(reader: asyncio.StreamReader) -> bytes:
    """The next frame's payload; raises IncompleteReadError at a clean end of stream."""
    (length,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if length > MAX_FRAME:
        raise ConnectionError(f"frame of {length} bytes is over the limit")
    return await reader.readexactly(length)


def _mac(secret: bytes, role: bytes, first: bytes, second: bytes, client_id: int, server_id: int) -> bytes:
    ids = struct.pack(">qq", client_id, server_id)
    return hmac.new(secret, role + first + second + ids, hashlib.sha256).digest()


async def client_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes, my_id: int, server_id: int
) -> FrameSealer:
    """Prove to the server that we know the secret, and check that it does too; the frames' sealer."""
    greeting = await reader.readexactly(len(MAGIC) + _NONCE)
    if greeting[: len(MAGIC)] != MAGIC:
        raise HandshakeFailed("the peer does not speak the Pygmy Raft protocol")
    server_nonce = greeting[len(MAGIC) :]
    client_nonce = os.urandom(_NONCE)
    writer.write(_HELLO.pack(my_id, client_nonce, _mac(secret, b"client", server_nonce, client_nonce, my_id, server_id)))
    answer = await reader.readexactly(_MAC)
    if not hmac.compare_digest(answer, _mac(secret, b"server", client_nonce, server_nonce, my_id, server_id)):
        raise HandshakeFailed(f"node {server_id} answered with a wrong proof of the secret")
    return FrameSealer(_frame_key(secret, server_nonce, client_nonce, my_id, server_id))


async def server_handshake(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, secret: bytes, my_id: int, allowed: set[int]
) -> tuple[int, FrameOpener]:
    """Check that the dialling node knows the secret; return its id and the opener of its frames."""
    server_nonce = os.urandom(_NONCE)
    writer.write(MAGIC + server_nonce)
    client_id, client_nonce, proof = _HELLO.unpack(await reader.readexactly(_HELLO.size))
    expected = _mac(secret, b"client", server_nonce, client_nonce, client_id, my_id)
    if client_id not in allowed or not hmac.compare_digest(proof, expected):
        raise HandshakeFailed(f"rejected a connection claiming to be node {client_id}")
    writer.write(_mac(secret, b"server", client_nonce, server_nonce, client_id, my_id))
    await writer.drain()
    return client_id, FrameOpener(_frame_key(secret, server_nonce, client_nonce, client_id, my_id))


class _Outbox:
    """The messages waiting for one peer, and the task that keeps a connection to it.

    Messages are written by `flush()`, synchronously, as soon as the caller says a batch is complete
    (the runtime does after each Ready) or, failing that, by the task when it next runs.
    """

    def __init__(self, transport: Transport, peer_id: int, address: tuple[str, int]) -> None:
        self.transport = transport
        self.peer_id = peer_id
        self.address = address
        self.queue: deque[Message] = deque(maxlen=MAX_QUEUED)
        self.wake = asyncio.Event()
        self.task: asyncio.Task[None] | None = None
        self.backoff = MIN_BACKOFF
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None  # set while connected and authenticated
        self._sealer: FrameSealer | None = None

    def put(self, message: Message) -> None:
        self.queue.append(message)
        self.wake.set()

    def flush(self) -> None:
        """Write everything queued as one frame, now, if connected."""
        if not self.queue or self._writer is None or self._reader is None or self._sealer is None:
            return
        if self._reader.at_eof() or self._writer.is_closing():
            # The peer closed (e.g. it was killed): asyncio would drop our writes silently.
            self._writer = None
            self.wake.set()  # the task notices and reconnects
            return
        batch = list(self.queue)
        self.queue.clear()
        self._writer.write(self._sealer.seal(_encode_batch(batch)))
        self.transport.frames_sent += 1
        self.transport.messages_sent += len(batch)

    async def run(self) -> None:
        while True:
            try:
                await self._connect_and_send()
            except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError) as exc:
                log.debug("connection to node %s lost: %s", self.peer_id, exc)
            # Messages queued meanwhile wait (up to MAX_QUEUED) for the next connection: a node
            # starting before its peers listen must not lose its first votes. The batch that was
            # being written when the connection broke is lost; Raft re-sends what matters.
            await asyncio.sleep(self.backoff)
            self.backoff = min(self.backoff * 2, MAX_BACKOFF)

    async def _connect_and_send(self) -> None:
        t = self.transport
        tls = {"ssl": t.tls.client, "server_hostname": self.address[0]} if t.tls else {}
        # asyncio.timeout, never wait_for: on 3.11 a wait_for whose inner step finishes as it is cancelled
        # returns that result and swallows the cancellation, and this task then waits forever in close().
        async with asyncio.timeout(HANDSHAKE_TIMEOUT):
            reader, writer = await asyncio.open_connection(*self.address, **tls)
        watch(writer.get_extra_info("socket"))  # a peer cut off is noticed in seconds, and reconnected after a heal
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                sealer = await client_handshake(reader, writer, t.secret, t.node_id, self.peer_id)
            self.backoff = MIN_BACKOFF  # connected: the next failure starts waiting from the bottom again
            self._reader, self._writer, self._sealer = reader, writer, sealer
            while True:
                if not self.queue:
                    self.wake.clear()
                    await self.wake.wait()
                self.flush()
                if self._writer is None:
                    raise ConnectionResetError(f"node {self.peer_id} closed the connection")
                await writer.drain()  # backpressure: a slow peer holds messages here, bounded
        finally:
            self._reader = self._writer = self._sealer = None
            writer.close()


class Transport:
    """Sends messages to peers by id and hands received ones to `deliver`, in order per sender.

    `peers` maps the members' ids to their (host, port) (this node's own entry, if present, is skipped);
    `listen` is this node's own address.
    """

    def __init__(
        self,
        node_id: int,
        listen: tuple[str, int],
        peers: dict[int, tuple[str, int]],
        secret: str | bytes,
        deliver: Callable[[list[Message]], None],
        *,
        tls: Any = None,
    ) -> None:
        self.node_id = node_id
        self.tls = tls  # pygmy.common.tls.TlsContexts, or None for plain TCP
        self.listen = listen
        self.secret = secret.encode() if isinstance(secret, str) else secret
        self.deliver = deliver
        self._outboxes = {pid: _Outbox(self, pid, addr) for pid, addr in peers.items() if pid != node_id}
        self._server: asyncio.Server | None = None
        self._inbound: set[asyncio.Task[None]] = set()
        self.rejected = 0  # connections that failed the handshake
        self.rejected_frames = 0  # connections closed on a frame that failed its MAC
        self.frames_sent = 0
        self.messages_sent = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(
            self._serve, *self.listen, ssl=self.tls.server if self.tls else None
        )
        for outbox in self._outboxes.values():
            outbox.task = asyncio.create_task(outbox.run(), name=f"raft-send-{outbox.peer_id}")

    def send(self, message: Message) -> None:
        """Queue `message`; it leaves at the next `flush()` or when the peer's task next runs."""
        outbox = self._outboxes.get(message.dst)
        if outbox is not None:
            outbox.put(message)

    def flush(self) -> None:
        """Write what is queued for each connected peer now, one frame per peer."""
        for outbox in self._outboxes.values():
            outbox.flush()

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        tasks = [o.task for o in self._outboxes.values() if o.task is not None]
        tasks += list(self._inbound)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._inbound.add(task)
        peer: int | None = None
        try:
            async with asyncio.timeout(HANDSHAKE_TIMEOUT):
                peer, opener = await server_handshake(reader, writer, self.secret, self.node_id, set(self._outboxes))
            while True:
                batch = _decode_batch(await opener.read(reader))
                self.deliver([m for m in batch if m.src == peer and m.dst == self.node_id])
        except HandshakeFailed as exc:
            self.rejected += 1
            log.warning("%s", exc)
        except FrameRejected as exc:
            # Once per connection: it is closed right here, and nothing more of it is read or logged.
            self.rejected_frames += 1
            log.warning("closed the Raft connection from node %s: %s", peer, exc)
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, msgspec.DecodeError, ssl.SSLError):
            pass
        except asyncio.CancelledError:
            pass  # closing; returning normally keeps asyncio from logging the cancellation
        finally:
            self._inbound.discard(task)
            writer.close()
